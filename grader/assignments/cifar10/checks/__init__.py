"""The homework's checks, one module per part of the notebook."""
