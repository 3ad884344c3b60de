# Sourced (`. "${0%/*}/args.sh"`) by the test connectors: finds the contract's three flags, which
# the driver appends after the connector's fixed arguments. The fixed arguments stay "$1", "$2"…
# and $dir is the driver's private directory.
prev=
for arg in "$@"; do
    case "$prev" in
        --scope-json) scope=$arg ;;
        --category-results-out) results=$arg ;;
        --graph-json) graph=$arg ;;
    esac
    prev=$arg
done
dir=${scope%/*}
