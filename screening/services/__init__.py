"""The service layer: what the service does, between the web (and the CLI) and storage.

``screenings`` submits, reads, lists and reviews screenings; ``keys`` knows the
configured API keys; ``problems`` holds the errors the services raise;
``registry`` keeps what ``create_app`` set up on the app. Views and commands
call these, never the store.
"""
