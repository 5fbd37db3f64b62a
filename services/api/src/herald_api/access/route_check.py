"""The check that no ``/v1`` route can act for a principal without spending one of its budgets.

``create_app`` runs it over every route, so an app with such a route does not start. Each
``/v1`` route must reach ``authenticate_request`` only through exactly one of the dependencies
of ``herald_api.access.principals`` that spend a budget, and that budget must suit its method:
reads for GET, writes for everything else (decision 0018).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from herald_api.access.principals import Budget, authenticate_request, budget_of

_READ_METHODS = frozenset({"GET", "HEAD"})


class UnmeteredRouteError(Exception):
    """Some ``/v1`` route could act for a principal without spending the right budget."""


def _budgets(dependant: Dependant, *, under: Budget | None = None) -> tuple[set[Budget], bool]:
    """The budgets spent below ``dependant``, and whether the principal is reachable without
    one."""
    budgets: set[Budget] = set()
    unmetered = False
    for sub in dependant.dependencies:
        budget = budget_of(sub.call)
        if budget is not None:
            budgets.add(budget)
        elif sub.call is authenticate_request and under is None:
            unmetered = True
        found, open_ = _budgets(sub, under=budget or under)
        budgets |= found
        unmetered |= open_
    return budgets, unmetered


def _problem(dependant: Dependant, methods: set[str]) -> str | None:
    budgets, unmetered = _budgets(dependant)
    expected = Budget.READ if methods <= _READ_METHODS else Budget.WRITE
    if unmetered:
        return "takes its principal without spending a budget"
    if not budgets:
        return "has no principal: take ReadPrincipal, WritePrincipal or read_through_cache(...)"
    if budgets != {expected}:
        spent = ", ".join(sorted(b.value for b in budgets))
        return f"spends {spent}; it should spend only the {expected.value} budget"
    return None


def check_routes_spend(routes: Sequence[BaseRoute]) -> None:
    """Raise ``UnmeteredRouteError`` naming every ``/v1`` route that breaks the rule.

    ``routes`` are an app's (``app.routes``); included routers are walked as served, with the
    dependencies they add to their routes.
    """
    problems = []
    for route in iter_route_contexts(routes):
        path = route.path or ""
        if isinstance(route.original_route, APIRoute) and (path + "/").startswith("/v1/"):
            methods = route.methods or set()
            if (problem := _problem(route.dependant, methods)) is not None:
                problems.append(f"{', '.join(sorted(methods))} {path} {problem}")
    if problems:
        raise UnmeteredRouteError("; ".join(problems))
