"""``herald``: the operator's command line."""
