from panjereh.catalog.models import Base
from panjereh.common.migrations import run_env

run_env(Base.metadata)
