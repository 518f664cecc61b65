"""The top floor: the ``foodpipe`` command (``cli``) and the commands that drive the libraries
(``demo``, ``bench``). Nothing imports them but ``foodpipe/__main__.py`` and the script entry."""
