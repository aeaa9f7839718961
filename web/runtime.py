"""What the running application holds: settings, the database, and the current router."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from triage.attachments import AttachmentStore
from triage.cases import IntakePolicy, Router
from triage.routing import IncompatibleModel, KeywordRouter, ModelStore
from triage.similarity import similar_cases
from triage.urgency import detect_hazard
from web.db import make_engine, session_factory
from web.settings import Settings

log = logging.getLogger(__name__)


class RouterProvider:
    """Hands out the deployed model, reloading it when a retrain deploys a new one.

    Falls back to the config's keyword rules when no model is deployed or the deployed one
    cannot be loaded (for instance, made by another scikit-learn minor version).
    """

    CHECK_EVERY = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_path)
        self._lock = threading.Lock()
        self._router: Router | None = None
        self._loaded_version: str | None = None
        self._checked = 0.0
        self.problem: str = ""

    def keyword_router(self) -> Router:
        return KeywordRouter(self.settings.keyword_map)

    def get(self) -> Router:
        now = time.monotonic()
        if self._router is not None and now - self._checked < self.CHECK_EVERY:
            return self._router
        with self._lock:
            self._checked = now
            version = self.store.current_version()
            if self._router is not None and version == self._loaded_version:
                return self._router
            self._router, self._loaded_version = self._load(version), version
            return self._router

    def _load(self, version: str | None) -> Router:
        if version is None:
            self.problem = ""
            return self.keyword_router()
        try:
            model = self.store.load(version)
        except (IncompatibleModel, FileNotFoundError, OSError, ValueError) as e:
            self.problem = f"model {version} not loaded: {e}; using keyword rules"
            log.warning(self.problem)
            return self.keyword_router()
        self.problem = ""
        return model


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    routers: RouterProvider
    attachments: AttachmentStore = field(init=False)

    def __post_init__(self) -> None:
        self.attachments = AttachmentStore(self.settings.instance_path / "attachments")
        # Citizens are told of their case's receipt, reply and close (triage/notifications).
        from web.notices import configure_sessions

        configure_sessions(self.sessions, self.settings, self.secret)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        return cls(settings, engine, session_factory(engine), RouterProvider(settings))

    def intake_policy(self) -> IntakePolicy:
        terms = tuple(self.settings.classifier.hazard_terms)
        return IntakePolicy(
            deadlines=self.settings.deadlines(),
            router=self.routers.get(),
            detect_hazard=lambda subject, body: detect_hazard(subject, body, terms),
            attachments=self.attachments,
            tracking_prefix=self.settings.app.tracking_prefix,
            auto_route=self.settings.classifier.auto_route,
            auto_route_threshold=self.settings.classifier.auto_route_threshold,
            find_similar=partial(
                similar_cases, min_score=self.settings.classifier.duplicate_min_score
            ),
            duplicate_window_days=self.settings.classifier.duplicate_window_days,
            query_code_key=self.secret,
            area_code=self.settings.app.area_code,
        )

    @cached_property
    def secret(self) -> bytes:
        """The application's secret key (read once: it may live in a file)."""
        return self.settings.secret_key().encode()

    @property
    def instance_path(self) -> Path:
        return self.settings.instance_path
