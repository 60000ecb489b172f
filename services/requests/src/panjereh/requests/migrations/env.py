from panjereh.common.migrations import run_env
from panjereh.requests.models import Base

run_env(Base.metadata)
