"""``python -m herald_api`` runs the API server, as ``herald-api`` does."""

from herald_api.serve import main

main()
