"""``python -m herald_api`` runs the API server."""

from herald_api.main import main

main()
