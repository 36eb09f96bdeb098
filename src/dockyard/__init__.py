"""Dockyard: a self-hosted platform as a service with Heroku's behaviour and API."""

__version__ = "0.1.0"
