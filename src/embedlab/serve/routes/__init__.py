"""The HTTP routes, one module per resource: embeddings and models, collections and search, health."""
