"""``orbit-lite serve``: a personal-recognizer service, another front end beside ``cli/``.

Requests become the same typed values the command line builds and call the same engine functions; the database of
collections and their files (``store``) sits beside the engine, never inside it.
"""
