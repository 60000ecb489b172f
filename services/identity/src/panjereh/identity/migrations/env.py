from panjereh.common.migrations import run_env
from panjereh.identity.models import Base

run_env(Base.metadata)
