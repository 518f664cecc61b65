from foodpipe.cli import main

main()
