#!/usr/bin/env bash
# The dev base image build lives in @iii/worker (packages/worker/images/build.sh) so the published package ships
# it; this path keeps working from a checkout.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/packages/worker/images/build.sh" "$@"
