"""pytest fixtures for the local HTTP servers (see testservers/http.py)."""
