"""Fixtures that run the real worker under `wrangler dev` (workerd) and real origins on 127.0.0.1.

Every process started here is stopped at teardown.
"""

import shutil

import pytest

from harness import SIGNING_SECRET, WranglerDev, base_config, free_port
from origin_server import Origin


@pytest.fixture
def make_edge():
    """Starts `wrangler dev` instances for one test and stops them afterwards."""
    started = []

    def make(name, config, persist_dir=None, faults=False):
        edge = WranglerDev(name, config, persist_dir, faults=faults)
        started.append(edge)
        return edge.start()

    yield make
    for edge in started:
        edge.stop()
    for persist_dir in {edge.persist_dir for edge in started}:
        shutil.rmtree(persist_dir, ignore_errors=True)


@pytest.fixture
def make_origin():
    """Real origins on 127.0.0.1, stopped afterwards."""
    origins = []

    def make(port=None, start=True, secret=SIGNING_SECRET):
        origin = Origin(port or free_port(), secret)
        origins.append(origin)
        return origin.start() if start else origin

    yield make
    for origin in origins:
        origin.stop()


@pytest.fixture(scope="module")
def shared_origin():
    origin = Origin(free_port(), SIGNING_SECRET).start()
    yield origin
    origin.stop()


@pytest.fixture(scope="module")
def edge(shared_origin):
    """The main receiver: two secrets (rotation), simple signature off, a 64 KiB body limit."""
    instance = WranglerDev("main", base_config(shared_origin.url))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(instance.persist_dir, ignore_errors=True)
