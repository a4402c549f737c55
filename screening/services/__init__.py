"""The service layer: what the service does, between the web (and the CLI) and storage.

``screenings`` submits, reads, lists and reviews screenings; ``keys`` knows the
configured API keys; ``problems`` holds the errors the services raise;
``config`` reads every setting; ``registry`` builds the services from them. Views and
commands call these, never the store.
"""
