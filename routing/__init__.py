"""Who handles a need: departments, industries (附件3), service means (附件2) and rules.

Pure: no database, no channel library.
"""

from routing.departments import Department, DepartmentDirectory, load_departments
from routing.industries import IndustryMatch, IndustryRow, IndustryTable, load_industries
from routing.router import (
    RouteDecision,
    RouteFacts,
    Router,
    RouteRule,
    RoutingConfig,
    TopicMatch,
    TopicRule,
    load_router,
    load_routing_config,
)
from routing.service_means import ServiceMeans, ServiceMeansTable, load_service_means

__all__ = [
    "Department",
    "DepartmentDirectory",
    "IndustryMatch",
    "IndustryRow",
    "IndustryTable",
    "RouteDecision",
    "RouteFacts",
    "RouteRule",
    "Router",
    "RoutingConfig",
    "ServiceMeans",
    "ServiceMeansTable",
    "TopicMatch",
    "TopicRule",
    "load_departments",
    "load_industries",
    "load_router",
    "load_routing_config",
    "load_service_means",
]
