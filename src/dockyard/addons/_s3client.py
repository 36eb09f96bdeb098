"""Just enough of an S3 client for the s3 provider: SigV4-signed path-style requests.

(boto3 would bring tens of megabytes for five calls; the signature is a page of code.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_KEY = re.compile(r"<Key>([^<]*)</Key>")


class S3Error(Exception):
    def __init__(self, status: int, body: str) -> None:
        code = re.search(r"<Code>([^<]*)</Code>", body)
        super().__init__(f"{status} {code.group(1) if code else body[:200]}")
        self.status = status
        self.code = code.group(1) if code else ""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3Client:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    timeout: float = 30.0

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        path = "/" + quote(bucket, safe="") + ("/" + quote(key, safe="/~") if key else "")
        # bucket "" is the service itself: GET / lists the caller's buckets.
        params = sorted((query or {}).items())
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params
        )
        now = dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        host = urlsplit(self.endpoint).netloc
        signed = {
            "host": host,
            "x-amz-content-sha256": digest,
            "x-amz-date": stamp,
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        names = sorted(signed)
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{n}:{signed[n].strip()}\n" for n in names),
                ";".join(names),
                digest,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key_bytes = _hmac(
            _hmac(_hmac(_hmac(f"AWS4{self.secret_key}".encode(), day), self.region), "s3"),
            "aws4_request",
        )
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        url = self.endpoint.rstrip("/") + path + (f"?{canonical_query}" if canonical_query else "")
        sent = {n: signed[n] for n in names if n != "host"}
        return httpx.request(
            method,
            url,
            content=body,
            headers={**sent, "Authorization": authorization},
            timeout=self.timeout,
        )

    def _checked(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code not in (ok or (200,)):
            raise S3Error(response.status_code, response.text)
        return response

    def list_buckets(self) -> list[str]:
        text = self._checked(self.request("GET", "")).text
        return re.findall(r"<Name>([^<]*)</Name>", text)

    def create_bucket(self, bucket: str) -> None:
        self._checked(self.request("PUT", bucket), 200)

    def delete_bucket(self, bucket: str) -> None:
        self._checked(self.request("DELETE", bucket), 204, 404)

    def keys(self, bucket: str) -> list[str]:
        found: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            text = self._checked(self.request("GET", bucket, query=query)).text
            found += _KEY.findall(text)
            more = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", text)
            if not more or "<IsTruncated>true</IsTruncated>" not in text:
                return found
            token = more.group(1)

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self._checked(self.request("PUT", bucket, key, body=body), 200)

    def get(self, bucket: str, key: str) -> bytes:
        return self._checked(self.request("GET", bucket, key)).content

    def delete(self, bucket: str, key: str) -> None:
        self._checked(self.request("DELETE", bucket, key), 204, 200, 404)

    def empty(self, bucket: str) -> None:
        for key in self.keys(bucket):
            self.delete(bucket, key)
