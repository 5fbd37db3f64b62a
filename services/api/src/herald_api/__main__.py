"""``python -m herald_api`` is ``herald-api``."""

from herald_api.main import main

main()
