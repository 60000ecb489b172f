from panjereh.common.migrations import run_env
from panjereh.inquiry_broker.models import Base

run_env(Base.metadata)
