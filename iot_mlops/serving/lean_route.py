"""A route for the hot prediction path: documented from its endpoint's signature like any FastAPI route, served
without FastAPI's general request handler.

FastAPI's handler resolves a dependency graph, opens exit stacks and collects parameters from every source on every
request: measured here, about a third of the prediction path's CPU. An endpoint that needs only the request, path
parameters and async key checks gets the same answers from a few direct calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response


class LeanRoute(APIRoute):
    """An APIRoute for an async endpoint that takes the Request, path parameters and request-only async dependencies,
    and returns a Response. As FastAPI does: dependencies first (a key check answers 401/403 before anything else),
    then the path parameters, validated with their declared annotations (422 in FastAPI's error shape)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(self._handler())

    def _handler(self) -> Callable[[Request], Awaitable[Response]]:
        dependant = self.dependant
        unsupported = [kind for kind in ("query_params", "header_params", "cookie_params", "body_params")
                       if getattr(dependant, kind)]
        for sub in dependant.dependencies:
            if (sub.dependencies or sub.path_params or sub.query_params or sub.header_params or sub.body_params
                    or not sub.request_param_name or not inspect.iscoroutinefunction(sub.call)):
                unsupported.append(f"dependency {sub.name}")
        if unsupported or not dependant.request_param_name or not inspect.iscoroutinefunction(self.endpoint):
            raise TypeError(f"LeanRoute {self.path}: needs an async endpoint taking the Request; unsupported: {unsupported}")
        endpoint, request_name = self.endpoint, dependant.request_param_name
        guards = [(sub.name, sub.call, sub.request_param_name) for sub in dependant.dependencies]
        params = [(field.name, field.alias, TypeAdapter(Annotated[field.field_info.annotation, field.field_info]))
                  for field in dependant.path_params]

        async def handle(request: Request) -> Response:
            values: dict[str, Any] = {request_name: request}
            for name, guard, argument in guards:
                values[name] = await guard(**{argument: request})
            errors = []
            for name, alias, adapter in params:
                try:
                    values[name] = adapter.validate_python(request.path_params[alias])
                except ValidationError as error:
                    errors += [{**e, "loc": ("path", alias, *e["loc"])} for e in error.errors(include_url=False)]
            if errors:
                raise RequestValidationError(errors)
            response = await endpoint(**values)
            if not isinstance(response, Response):
                raise TypeError(f"LeanRoute {self.path}: the endpoint must return a Response, not {type(response).__name__}")
            return response

        return handle
