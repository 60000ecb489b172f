from __future__ import annotations

from panjereh.gateway.config import Bucket, ClassLimits, RouteClass
from panjereh.gateway.limits import RateLimiter, TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBuckets:
    def test_a_burst_is_admitted_then_refused_then_refilled(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock=clock)
        bucket = Bucket(per_second=2.0, burst=3)
        assert [buckets.take("ip", bucket) for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = buckets.take("ip", bucket)
        assert 0.49 < wait <= 0.5
        clock.now += wait
        assert buckets.take("ip", bucket) == 0.0

    def test_keys_do_not_share_buckets(self) -> None:
        buckets = TokenBuckets(clock=Clock())
        bucket = Bucket(per_second=1.0, burst=1)
        assert buckets.take("a", bucket) == 0.0
        assert buckets.take("a", bucket) > 0
        assert buckets.take("b", bucket) == 0.0

    def test_quiet_buckets_are_forgotten_when_the_table_is_full(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock=clock, max_buckets=2)
        bucket = Bucket(per_second=1.0, burst=1)
        buckets.take("a", bucket)
        buckets.take("b", bucket)
        clock.now += 61
        buckets.take("c", bucket)
        assert len(buckets) == 1


class TestRateLimiter:
    def test_per_address_and_per_caller_buckets_are_separate_per_class(self) -> None:
        limits = {
            RouteClass.OTP_VERIFY: ClassLimits(per_ip=Bucket(per_second=0.1, burst=1)),
            RouteClass.READ: ClassLimits(per_client=Bucket(per_second=0.1, burst=1)),
        }
        limiter = RateLimiter(limits, buckets=TokenBuckets(clock=Clock()))
        assert limiter.for_address(RouteClass.OTP_VERIFY, "1.2.3.4") == 0
        assert limiter.for_address(RouteClass.OTP_VERIFY, "1.2.3.4") > 0
        assert limiter.for_address(RouteClass.READ, "1.2.3.4") == 0  # no per-IP read limit
        assert limiter.for_caller(RouteClass.READ, "person-1") == 0
        assert limiter.for_caller(RouteClass.READ, "person-1") > 0
        assert limiter.for_caller(RouteClass.OTP_VERIFY, "person-1") == 0

    def test_the_ip_factor_widens_per_address_buckets_only(self) -> None:
        limits = {RouteClass.READ: ClassLimits(per_ip=Bucket(per_second=1, burst=1))}
        limiter = RateLimiter(limits, ip_factor=3, buckets=TokenBuckets(clock=Clock()))
        assert [limiter.for_address(RouteClass.READ, "a") for _ in range(4)][:3] == [0, 0, 0]

    def test_retry_after_is_whole_seconds_and_never_zero(self) -> None:
        assert retry_after(0.01) == "1"
        assert retry_after(2.2) == "3"
