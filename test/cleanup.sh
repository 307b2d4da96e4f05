#!/usr/bin/env bash
# Last-resort clean-up for CI and developers: removes whatever a crashed test run left on the machine,
# identified by the names tests use (ambit-t*), and nothing else.
set -u
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ambit-t'); do
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns delete "$ns" 2>/dev/null
  rm -rf "/etc/netns/$ns"
done
for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  for cg in "$root"/ambit-t* "$root"/ambit/t*; do
    [ -d "$cg" ] || continue
    echo 1 > "$cg/cgroup.kill" 2>/dev/null
    sleep 0.2
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
done
rm -rf /sys/fs/bpf/ambit/t* 2>/dev/null
rmdir /sys/fs/bpf/ambit 2>/dev/null
exit 0
