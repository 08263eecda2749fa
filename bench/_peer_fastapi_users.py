"""The peer for bench/peers.py: a fastapi-users 15 application, as its documentation builds it.

SQLAlchemy user table on the same PostgreSQL (asyncpg), a Bearer JWT backend, the register,
login and ``/users/me`` routers, and the same Argon2id parameters as ours (m=64 MiB, t=3, p=1,
read from our settings so they cannot drift). Run by uvicorn in a subprocess whose PYTHONPATH
puts fastapi-users and the SQLAlchemy 2.0 it requires (``fastapi-users-db-sqlalchemy`` pins
``sqlalchemy<2.1``; we use 2.1) ahead of our virtualenv: see bench/peers.py.

Not part of the service and never imported by it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

SECRET = os.environ.get("PEER_JWT_SECRET", "peer-bench-secret-not-for-production-0123456789")


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


def password_helper() -> PasswordHelper:
    memory = int(os.environ.get("PEER_ARGON2_MEMORY_KIB", "65536"))
    time_cost = int(os.environ.get("PEER_ARGON2_TIME_COST", "3"))
    parallelism = int(os.environ.get("PEER_ARGON2_PARALLELISM", "1"))
    hasher = Argon2Hasher(memory_cost=memory, time_cost=time_cost, parallelism=parallelism)
    return PasswordHelper(PasswordHash((hasher,)))


def create_app() -> FastAPI:
    engine = create_async_engine(os.environ["PEER_DATABASE_URL"], pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    helper = password_helper()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def get_user_db(
        session: AsyncSession = Depends(get_session),  # noqa: B008 - FastAPI's idiom
    ) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
        yield SQLAlchemyUserDatabase(session, User)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = SECRET
        verification_token_secret = SECRET

    async def get_user_manager(
        user_db: Any = Depends(get_user_db),  # noqa: B008 - FastAPI's idiom
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db, helper)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=SECRET, lifetime_seconds=3600)

    backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(users.get_auth_router(backend), prefix="/auth/jwt")
    app.include_router(users.get_register_router(UserRead, UserCreate), prefix="/auth")
    app.include_router(users.get_users_router(UserRead, schemas.BaseUserUpdate), prefix="/users")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
