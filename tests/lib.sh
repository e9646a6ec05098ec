# What the cluster tests (tests/*.sh) share; sourced after scripts/common.sh.
#   check DESCRIPTION EXPECTED ACTUAL   prints ok or FAILED with the difference; a failure sets
#                                       $fail, which the test exits with at its end
fail=0
check() {
    if [ "$2" = "$3" ]; then echo "  ok: $1"; else
        echo "  FAILED: $1"; diff <(echo "$2") <(echo "$3") | sed 's/^/    /' || true; fail=1; fi
}
