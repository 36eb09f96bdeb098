"""An app for Dockyard's add-on tests: it keeps values in whichever backing services it is
given through config vars (DATABASE_URL, REDIS_URL, MYSQL_URL, S3_*), the twelve-factor way.

GET /put?kind=K&key=X&value=V stores V under X; GET /get?kind=K&key=X reads it back;
GET / says which kinds are configured. Kinds: postgres, redis, mysql, s3.
"""

import json
import os
from urllib.parse import parse_qs, unquote, urlsplit


def postgres(key, value=None):
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (key text PRIMARY KEY, value text)")
        if value is not None:
            conn.execute(
                "INSERT INTO items VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = %s",
                (key, value, value),
            )
        row = conn.execute("SELECT value FROM items WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None


def redis_store(key, value=None):
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    name = os.environ.get("REDIS_KEY_PREFIX", "") + key
    if value is not None:
        client.set(name, value)
    found = client.get(name)
    client.close()
    return found.decode() if found is not None else None


def mysql(key, value=None):
    import pymysql

    parts = urlsplit(os.environ["MYSQL_URL"])
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username),
        password=unquote(parts.password),
        database=parts.path.lstrip("/"),
        autocommit=True,
    )
    with conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS items (k VARCHAR(100) PRIMARY KEY, v TEXT)")
        if value is not None:
            cursor.execute("REPLACE INTO items VALUES (%s, %s)", (key, value))
        cursor.execute("SELECT v FROM items WHERE k = %s", (key,))
        row = cursor.fetchone()
        return row[0] if row else None


def s3(key, value=None):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        region_name=os.environ["S3_REGION"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = os.environ["S3_BUCKET"]
    if value is not None:
        client.put_object(Bucket=bucket, Key=key, Body=value.encode())
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


KINDS = {
    "postgres": ("DATABASE_URL", postgres),
    "redis": ("REDIS_URL", redis_store),
    "mysql": ("MYSQL_URL", mysql),
    "s3": ("S3_BUCKET", s3),
}


def app(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "/")
    status, body = "200 OK", {}
    try:
        if path == "/":
            body = {
                "dyno": os.environ.get("DYNO"),
                "kinds": [kind for kind, (var, _) in KINDS.items() if var in os.environ],
            }
        elif path in ("/put", "/get"):
            _, store = KINDS[query["kind"]]
            value = query.get("value") if path == "/put" else None
            body = {"value": store(query["key"], value), "dyno": os.environ.get("DYNO")}
        else:
            status, body = "404 Not Found", {"error": "no such page"}
    except Exception as exc:  # the test wants to see what failed, not a bare 500
        status, body = "500 Internal Server Error", {"error": f"{type(exc).__name__}: {exc}"}
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
