"""A Flask app for Dockyard's end-to-end tests: one page, served by gunicorn."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    dyno = os.environ.get("DYNO", "a dyno")
    return f"<!doctype html><title>flask-pip</title><h1>Hello from Flask on {dyno}</h1>\n"
