from foodpipe.commands.cli import main

main()
