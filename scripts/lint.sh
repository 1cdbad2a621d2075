#!/usr/bin/env bash
# Repository checks run by the test command (CTest lint_*):
#   lint.sh format          clang-format --dry-run -Werror with the repo's .clang-format on every
#                           tracked *.cc / *.h (fix: clang-format -i FILE)
#   lint.sh self-contained  no tracked file refers to the workspace's shared folder beside the
#                           repository (dot-dot-slash shared): a clone of
#                           the repository alone must build, test and document itself
# Exit 0 pass, 1 fail, 77 skip (tool missing or not a git checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: lint.sh format|self-contained}
git rev-parse --is-inside-work-tree > /dev/null 2>&1 || { echo "SKIP: not a git checkout"; exit 77; }
case "$what" in
  format)
    command -v clang-format > /dev/null || { echo "SKIP: clang-format not installed"; exit 77; }
    mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cc' '*.h')
    if ! clang-format --dry-run -Werror "${files[@]}" 2> /tmp/cellflux-lint-format.$$; then
      grep -E '^[^ :]+:[0-9]+:[0-9]+: error' /tmp/cellflux-lint-format.$$ | cut -d: -f1,2 | sort -u | head -40
      echo "FAIL: $(grep -c 'error:' /tmp/cellflux-lint-format.$$) places not clang-formatted" \
           "(run: clang-format -i FILE)"
      rm -f /tmp/cellflux-lint-format.$$
      exit 1
    fi
    rm -f /tmp/cellflux-lint-format.$$
    echo "format: ${#files[@]} files clang-formatted"
    ;;
  self-contained)
    pattern='\.\./'"shared"
    if git grep -n -I -E "$pattern" -- . ':!tests/fixtures/l1000'; then
      echo "FAIL: the lines above refer to ${pattern//\\/}, which a clone of the repository lacks"
      exit 1
    fi
    echo "self-contained: no reference to the shared folder beside the repository"
    ;;
  *) echo "unknown check $what"; exit 2 ;;
esac
