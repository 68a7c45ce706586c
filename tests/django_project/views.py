"""Views that call ``samplez.set`` as a Django site would."""

from __future__ import annotations

from typing import AsyncIterator, Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

import samplez

from . import metrics


def item(request: HttpRequest, account: str, item: int) -> HttpResponse:
    samplez.set(metrics.LATENCY, request.path, 5 + item)
    samplez.set(metrics.HITS, "item")
    samplez.set(metrics.PAGEVIEWS, account)
    return JsonResponse({"account": account, "item": item})


def fail(request: HttpRequest) -> HttpResponse:
    samplez.set(metrics.HITS, "fail")
    raise RuntimeError("the view failed")


def stream(request: HttpRequest) -> HttpResponse:
    def rows() -> Iterator[str]:
        for n in range(3):
            samplez.set(metrics.HITS, "streamed")  # while the body is sent
            yield f"row {n}\n"

    return StreamingHttpResponse(rows(), content_type="text/plain")


async def astream(request: HttpRequest) -> HttpResponse:
    async def rows() -> AsyncIterator[str]:
        for n in range(3):
            samplez.set(metrics.HITS, "streamed")  # while the body is sent, under ASGI
            yield f"row {n}\n"

    return StreamingHttpResponse(rows(), content_type="text/plain")
