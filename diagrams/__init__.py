"""The book's diagrams, drawn by code. ``python -m diagrams`` (``make figures``) redraws them.

``style.py`` holds the visual language; each ``chNN_<topic>.py`` draws the diagrams of one
chapter. See ``diagrams/README.md``.
"""
