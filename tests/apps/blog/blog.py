"""A blog that keeps no local state: posts in PostgreSQL (DATABASE_URL), uploaded images in
S3 (the S3_* variables), so that any number of web dynos serve the same blog.

POST /posts (JSON {"title", "body"}) · GET /posts · POST /uploads/NAME (the file) ·
GET /uploads/NAME · GET / (which dyno answered)
"""

import json
import os

import boto3
import psycopg
from botocore.config import Config
from botocore.exceptions import ClientError


def database():
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS posts (id serial PRIMARY KEY, title text, body text)")
    return conn


def storage():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        region_name=os.environ["S3_REGION"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def respond(start_response, status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload = environ["wsgi.input"].read(length) if length else b""
    dyno = os.environ.get("DYNO", "")
    if path == "/":
        return respond(start_response, "200 OK", {"dyno": dyno})
    if path == "/posts":
        with database() as conn:
            if method == "POST":
                post = json.loads(payload)
                conn.execute(
                    "INSERT INTO posts (title, body) VALUES (%s, %s)", (post["title"], post["body"])
                )
            rows = conn.execute("SELECT title, body FROM posts ORDER BY id").fetchall()
        posts = [{"title": title, "body": body} for title, body in rows]
        return respond(start_response, "200 OK", {"dyno": dyno, "posts": posts})
    if path.startswith("/uploads/"):
        name, bucket = path.removeprefix("/uploads/"), os.environ["S3_BUCKET"]
        client = storage()
        if method == "POST":
            client.put_object(Bucket=bucket, Key=f"uploads/{name}", Body=payload)
            return respond(start_response, "201 Created", {"dyno": dyno, "name": name})
        try:
            found = client.get_object(Bucket=bucket, Key=f"uploads/{name}")
        except ClientError:
            return respond(start_response, "404 Not Found", {"dyno": dyno})
        return respond(start_response, "200 OK", found["Body"].read(), "image/png")
    return respond(start_response, "404 Not Found", {"error": "no such page"})
