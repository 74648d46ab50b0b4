import pytest

from rosproc import RosUnavailable, ros_environment


@pytest.fixture(scope="session")
def _ros_base():
    try:
        return ros_environment()
    except RosUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def ros_env(_ros_base):
    """A sourced ros_ws environment on a domain id of its own (one per test)."""
    return ros_environment()
