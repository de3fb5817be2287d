"""The prediction service: a FastAPI app over the champion models, the online features and the operational store."""

from __future__ import annotations

import gc
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated

import anyio
import sqlalchemy as sa
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from threadpoolctl import threadpool_limits

from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.opstore.engine import engine_for
from iot_mlops.opstore.feedback import FeedbackError, FeedbackStore, IdempotencyKeyReused, UnknownPredictionError
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.profiles import load_profiles
from iot_mlops.registry.lifecycle import RollbackError
from iot_mlops.registry.mlflow_service import ModelNotFound, ModelRegistry
from iot_mlops.serving import catalog, schemas
from iot_mlops.serving.auth import AuthError, KeyFirstRoute, KeyRing, Principal, Role, document_keys, parse_keys, require
from iot_mlops.serving.batching import MicroBatcher
from iot_mlops.serving.config import ServingSettings
from iot_mlops.serving.models import ModelCache, specs_for, sqlite_changes
from iot_mlops.serving.service import OnlineFeatures, PredictionService, ServingError
from iot_mlops.settings import Settings, get_settings, psycopg2_url

ModelName = Annotated[str, Path(pattern=schemas.MODEL_NAME, examples=["water_heaters_component_failure"])]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Any unique string (a UUID) per feedback: a retry with the same key and body returns the first "
                "response (header Idempotent-Replayed: true) and stores nothing; the key with another body is 409. "
                "Keys are scoped to the API key.")]
REPLAYED = "Idempotent-Replayed"


def _errors(*statuses: int) -> dict:
    return {s: {"model": schemas.ErrorOut} for s in statuses}


AUTH = _errors(401, 403)
BODY = _errors(400, 413)  # 400: a body that is not even text (FastAPI), 413: over the size limit


class PayloadTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reading passes it on (it turns other errors into a 400)."""

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    """413 for a body over the limit, when the route reads it (after the key check): by Content-Length before
    reading anything, or as soon as a chunked body streams past the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        declared, seen = int(length) if length is not None and length.isdigit() else 0, 0

        async def limited():
            nonlocal seen
            if declared > self.max_bytes:
                raise PayloadTooLarge()
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge()
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)


def _validation_422(detail: str, loc: tuple = ("body",)) -> JSONResponse:
    """Our own 422s have FastAPI's validation-error shape, so every 422 has one schema."""
    return JSONResponse({"detail": [{"loc": list(loc), "msg": detail, "type": "value_error"}]}, status_code=422)


def _handlers(app: FastAPI) -> None:
    detail = lambda status: (lambda _req, error: JSONResponse({"detail": str(error)}, status_code=status))
    app.add_exception_handler(AuthError, lambda _req, e: JSONResponse({"detail": e.detail}, status_code=e.status))
    app.add_exception_handler(ServingError, lambda _req, e: JSONResponse({"detail": e.detail}, status_code=e.status))
    app.add_exception_handler(UnknownPredictionError, detail(404))
    app.add_exception_handler(FeedbackError, lambda _req, e: _validation_422(str(e)))
    app.add_exception_handler(ModelNotFound, detail(404))
    app.add_exception_handler(RollbackError, detail(409))
    app.add_exception_handler(IdempotencyKeyReused, detail(409))
    app.add_exception_handler(PayloadTooLarge, lambda req, _e: _too_large(req.app.state.serving.max_body_bytes))
    # The store being down is an outage (503), not a bug; other database errors stay 500s.
    app.add_exception_handler(sa.exc.OperationalError, lambda _req, e: JSONResponse(
        {"detail": f"operational store unavailable: {e.orig}"}, status_code=503))


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    """The app, configured from settings (the environment by default); models load when it starts."""
    settings, serving = settings or get_settings(), serving or ServingSettings()
    profiles = load_profiles(settings.profiles_dir)
    store_url = psycopg2_url(settings.store)
    tracking_uri, artifacts = settings.tracking_uri, settings.artifacts
    cache = ModelCache(lambda: _open_registry(tracking_uri, artifacts), specs_for(profiles), serving.model_poll_seconds,
                       serving.explain_top, changed=sqlite_changes(tracking_uri))
    log = PredictionLog(engine_for(store_url))
    service = PredictionService(profiles, cache, OnlineFeatures(settings.lake), log)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Requests score a few rows: BLAS/OpenMP threads would cost more than they save on a shared CPU.
        with threadpool_limits(1):
            await anyio.to_thread.run_sync(cache.refresh)
            # Imports and models leave millions of long-lived objects; a full GC pass over them stalls every request
            # in flight for tens of milliseconds, so they go to the permanent generation.
            gc.collect()
            gc.freeze()
            cache.start()
            await app.state.batcher.start()
            try:
                yield
            finally:
                await app.state.batcher.stop()
                await anyio.to_thread.run_sync(cache.stop)
                gc.unfreeze()

    app = FastAPI(title="iot_mlops prediction service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Per-device failure and anomaly predictions with explanations, feedback, models and rollback. "
                              "Send an API key in X-API-Key: reader (predictions, models), operator (feedback, batch), "
                              "admin (rollback).")
    app.state.settings, app.state.serving, app.state.service = settings, serving, service
    app.state.keys = KeyRing(parse_keys(serving.api_keys))
    app.state.cache = cache
    app.state.decisions = DecisionLog(store_url)
    app.state.feedback = FeedbackStore(store_url)
    app.state.batcher = MicroBatcher(service.score, service.log.record_many, serving.max_batch_rows)
    app.add_middleware(BodyLimit, max_bytes=serving.max_body_bytes)
    app.router.route_class = KeyFirstRoute
    _handlers(app)
    _docs(app)
    _routes(app)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_keys(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi
    return app


def _open_registry(tracking_uri: str, artifacts) -> ModelRegistry:
    return ModelRegistry(tracking_uri, artifacts)


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.cache.registry


STATIC = "/static"
# Swagger UI and ReDoc as packaged by fastapi-offline, so /docs and /redoc work without a network.
DOCS_ASSETS = files("fastapi_offline") / "static"


def _docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the packaged assets under /static: no CDN, no key."""
    app.mount(STATIC, StaticFiles(directory=str(DOCS_ASSETS)), name="static")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        # validatorUrl null: Swagger UI would otherwise send the schema to validator.swagger.io.
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=f"{root}{oauth2_redirect}",
                                   swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{STATIC}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{STATIC}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{STATIC}/favicon.png", with_google_fonts=False)


def _routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=schemas.HealthOut, tags=["health"])
    async def healthz():
        """The process is up (no key needed)."""
        return schemas.HealthOut(status="ok")

    @app.get("/readyz", response_model=schemas.ReadyOut, responses={503: {"model": schemas.ReadyOut}}, tags=["health"])
    def readyz(request: Request):
        """Ready when a champion is loaded, the model poller runs and the operational store answers (no key needed)."""
        cache: ModelCache = request.app.state.cache
        try:
            with engine_for(psycopg2_url(request.app.state.settings.store)).connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            store = True
        except sa.exc.SQLAlchemyError:
            store = False
        models = [schemas.ModelStatus(**s) for s in cache.status()]
        loaded = sum(1 for s in models if s.alias == "champion" and s.loaded_version)
        problems = [p for p, bad in (("operational store unreachable", not store), ("no champion loaded", not loaded),
                                     (f"model poller stopped: {cache.poller_error}", not cache.polling)) if bad]
        body = schemas.ReadyOut(ready=not problems, store=store, champions_loaded=loaded,
                                detail="; ".join(problems) or "ready", models=models)
        return JSONResponse(body.model_dump(mode="json"), status_code=503 if problems else 200)

    async def predict(request: Request,
                      device_type: Annotated[str, Path(pattern=schemas.IDENTIFIER, max_length=64, examples=["water_heater"])],
                      device_id: Annotated[str, Path(pattern=schemas.DEVICE_ID, examples=["WH-1001"])],
                      prediction_type: Annotated[str, Path(pattern=schemas.IDENTIFIER, max_length=64,
                                                           examples=["component_failure"])],
                      _: Principal = Depends(require(Role.reader))):
        """Score the device's latest online features with its fleet's champion, explain it, and record it."""
        job = request.app.state.service.resolve(device_type, device_id, prediction_type)
        out: schemas.PredictionOut = await request.app.state.batcher.submit(job)
        # Built and validated as a PredictionOut already: serialize once instead of FastAPI re-validating it.
        return Response(out.model_dump_json(), media_type="application/json")

    app.router.add_api_route("/api/predictions/{device_type}/{device_id}/{prediction_type}", predict, methods=["GET"],
                              response_model=schemas.PredictionOut, responses={**AUTH, **_errors(404, 503)},
                              tags=["predictions"])

    @app.post("/api/predictions/batch", response_model=schemas.BatchOut, responses={**AUTH, **BODY},
              tags=["predictions"])
    async def predict_batch(request: Request, body: schemas.BatchRequest, _: Principal = Depends(require(Role.operator))):
        """Many devices at once (at most BATCH_MAX); items that cannot be scored are listed in `errors`."""
        service: PredictionService = request.app.state.service
        jobs, errors = [], []
        for i, item in enumerate(body.items):
            try:
                jobs.append((i, service.resolve(item.device_type, item.device_id, item.prediction_type)))
            except ServingError as error:
                errors.append(schemas.BatchError(index=i, device_id=item.device_id, status=error.status, detail=error.detail))
        results = await anyio.to_thread.run_sync(service.predict, [job for _, job in jobs]) if jobs else []
        predictions = []
        for (i, job), result in zip(jobs, results):
            if isinstance(result, ServingError):
                errors.append(schemas.BatchError(index=i, device_id=job.device_id, status=result.status, detail=result.detail))
            else:
                predictions.append(result)
        return schemas.BatchOut(predictions=predictions, errors=sorted(errors, key=lambda e: e.index))

    replayed_header = {REPLAYED: {"description": "`true` when the response repeats the first one for its Idempotency-Key.",
                                  "schema": {"type": "string", "enum": ["true"]}}}

    @app.post("/api/predictions/{prediction_id}/feedback", status_code=201, response_model=schemas.FeedbackCreated,
              responses={201: {"headers": replayed_header}, **AUTH, **BODY, **_errors(404, 409)}, tags=["feedback"])
    def feedback(request: Request, response: Response, prediction_id: uuid.UUID, body: schemas.FeedbackBody,
                 idempotency_key: IdempotencyKey = None, principal: Principal = Depends(require(Role.operator))):
        """Feedback about a served prediction: type, rating 1-5, outcome, comment, source. Send an Idempotency-Key
        to retry safely."""
        store: FeedbackStore = request.app.state.feedback
        if idempotency_key is None:
            stored = store.add(str(prediction_id), body)
        else:
            stored, replayed = store.add_once(str(prediction_id), body, principal=principal.name, key=idempotency_key)
            if replayed:
                response.headers[REPLAYED] = "true"
        return schemas.FeedbackCreated(id=stored, prediction_id=str(prediction_id))

    @app.get("/api/models", response_model=list[schemas.ModelSummaryOut], responses=AUTH, tags=["models"])
    def models(request: Request, _: Principal = Depends(require(Role.reader))):
        """Registered models with champion, challenger and latest version, and what this process serves."""
        return catalog.list_models(_registry(request), request.app.state.cache)

    @app.get("/api/models/{name}", response_model=schemas.ModelDetailOut, responses={**AUTH, **_errors(404)}, tags=["models"])
    def model(request: Request, name: ModelName, _: Principal = Depends(require(Role.reader))):
        """Every version with its aliases, tags and metrics."""
        return catalog.model_detail(_registry(request), request.app.state.cache, name)

    @app.get("/api/models/{name}/history", response_model=schemas.HistoryOut, responses=AUTH, tags=["models"])
    def model_history(request: Request, name: ModelName, _: Principal = Depends(require(Role.reader))):
        """Alias moves and retraining decisions about the model, oldest first."""
        return catalog.model_history(request.app.state.decisions, name)

    @app.get("/api/models/{name}/shadow", response_model=schemas.ShadowOut, responses=AUTH, tags=["models"])
    def model_shadow(request: Request, name: ModelName,
                     day: Annotated[schemas.Day | None, Query(description="UTC day, YYYY-MM-DD (default today).")] = None,
                     _: Principal = Depends(require(Role.reader))):
        """Champion vs challenger on one day's live traffic, from the shadow scores stored with each prediction."""
        engine = request.app.state.feedback.engine
        return catalog.shadow_comparison(engine, name, day or datetime.now(UTC).date())

    @app.post("/api/models/{name}/rollback", response_model=schemas.DecisionOut,
              responses={**AUTH, **BODY, **_errors(404, 409)}, tags=["models"])
    def model_rollback(request: Request, name: ModelName, body: Annotated[schemas.RollbackIn, Body()],
                       principal: Principal = Depends(require(Role.admin))):
        """Champion back to the newest earlier version that passed its gate (as `iot-mlops models rollback`)."""
        return catalog.rollback_model(_registry(request), request.app.state.decisions, request.app.state.cache, name,
                                      body.reason, f"api:{principal.name}")
