"""Serving a trained model over HTTP with LitServe: the API, the request ingress, the page."""
