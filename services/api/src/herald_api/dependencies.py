"""Request dependencies shared by the routes: the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from herald_api.auth import AuthenticationError, Principal, authenticate
from herald_api.lifespan import StateDep
from herald_api.problems import Problem
from herald_api.request_context import set_account_of


async def current_principal(
    request: Request,
    state: StateDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    try:
        principal = await authenticate(authorization, state.db, state.keys)
    except AuthenticationError as exc:
        raise Problem(
            401, exc.reason, type_="unauthorized", headers={"WWW-Authenticate": exc.challenge}
        ) from None
    set_account_of(request.scope, str(principal.account_id))
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
