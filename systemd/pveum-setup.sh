#!/bin/bash
# pve-runners: the least-privilege Proxmox VE identity of the listener (README, "Install on a PVE host", step 3).
# Run as root on a PVE 8/9 host; installed as /usr/libexec/pve-runners/pveum-setup.
#
#   pveum-setup --bridge vmbr1 [--vlan 30] [--storage local-lvm] [--pool ci] [--template-vmid 9000[,9001…]]
#               [--user pve-runners@pve] [--token listener] [--role PVERunners]
#               [--token-file /etc/pve-runners/credentials/pve-token] [--placement]
#               [--firewall [--dns 192.0.2.53[,…]]] [--dry-run]
#
# - role PVERunners with exactly: VM.Clone VM.Allocate VM.PowerMgmt VM.Config.Network VM.Config.CPU
#   VM.Config.Memory VM.Config.Options VM.Audit Datastore.AllocateSpace SDN.Use
# - pool `ci`: the template and the storage are members, so the role granted on /pool/ci reaches
#   them (pool ACLs are inherited by members); runners join it when they are cloned
# - user pve-runners@pve (no password: it only ever uses the token) and its privilege-separated
#   token `listener` (a privsep token gets the intersection of its own and the user's ACLs, so both
#   are granted the role)
# - ACLs on /pool/<pool> and on /sdn/zones/localnetwork/<bridge> (SDN.Use for the CI bridge; it
#   propagates to the VLAN tags under it)
# - --placement (several nodes): role PVERunnersAudit (Sys.Audit only) on /nodes, so placement reads
#   each node's free memory and CPU from /cluster/resources; read-only, nothing else
# - --firewall (needs --template-vmid): the security group pve-runners (Sys.Modify on /, so root's
#   job, never the token's): runners may not send to private, link-local or CGNAT addresses (the
#   management network, the PVE hosts, each other) nor answer DHCP, except DNS to --dns; the rest
#   (the internet) is let out. Each template gets firewall options (on, policy_in DROP, macfilter,
#   no router advertisements) and a rule using the group; clones start with a copy of both
#   (clone_vmfw_conf). An existing group is kept as it is. The datacenter firewall itself is only
#   checked: turning it on also filters the hosts (README, "Network isolation").
# The token's secret is shown by PVE once: with --token-file it goes straight into that file (0600),
# never to the terminal. Running it again keeps what exists (the token is never regenerated).
# --dry-run prints the pveum and pvesh commands and changes nothing. PVE_RUNNERS_PVEUM and
# PVE_RUNNERS_PVESH override `pveum` and `pvesh` (tests).
set -euo pipefail
umask 077
export LC_ALL=C

PRIVS="VM.Clone,VM.Allocate,VM.PowerMgmt,VM.Config.Network,VM.Config.CPU,VM.Config.Memory,VM.Config.Options,VM.Audit,Datastore.AllocateSpace,SDN.Use"
pveum_cmd="${PVE_RUNNERS_PVEUM:-pveum}"
pvesh_cmd="${PVE_RUNNERS_PVESH:-pvesh}"
GROUP=pve-runners
# Where runners must not send: RFC 1918, link-local, CGNAT (RFC 6598), IPv6 ULA.
PRIVATE_NETS=(10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 169.254.0.0/16 100.64.0.0/10 fc00::/7)
firewall=0
dns=""
bridge=""
vlan=""
storage=""
pool=ci
template_vmid=""
user=pve-runners@pve
token=listener
role=PVERunners
token_file=""
placement=0
dry=0

die() {
  echo "pveum-setup: $*" >&2
  exit 2
}
need() { [[ -n "${2:-}" ]] || die "$1 needs a value"; }
while (($#)); do
  case "$1" in
    --bridge) need "$1" "${2:-}"; bridge="$2"; shift ;;
    --vlan) need "$1" "${2:-}"; vlan="$2"; shift ;;
    --storage) need "$1" "${2:-}"; storage="$2"; shift ;;
    --pool) need "$1" "${2:-}"; pool="$2"; shift ;;
    --template-vmid) need "$1" "${2:-}"; template_vmid="$2"; shift ;;
    --user) need "$1" "${2:-}"; user="$2"; shift ;;
    --token) need "$1" "${2:-}"; token="$2"; shift ;;
    --role) need "$1" "${2:-}"; role="$2"; shift ;;
    --token-file) need "$1" "${2:-}"; token_file="$2"; shift ;;
    --placement) placement=1 ;;
    --firewall) firewall=1 ;;
    --dns) need "$1" "${2:-}"; dns="$2"; shift ;;
    --dry-run) dry=1 ;;
    -h | --help)
      # The header comment, up to the first line of code.
      awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ -n "$bridge" ]] || die "--bridge is required (the CI bridge, e.g. vmbr1)"
[[ "$bridge" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad bridge name '$bridge'"
# PVE's net[n] tag: an integer 1..4094 (pve-container src/PVE/LXC/Config.pm, 'tag').
[[ -z "$vlan" || ( "$vlan" =~ ^[1-9][0-9]{0,3}$ && "$vlan" -le 4094 ) ]] || die "bad VLAN tag '$vlan' (an integer from 1 to 4094)"
[[ "$pool" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "bad pool name '$pool'"
[[ -z "$template_vmid" || "$template_vmid" =~ ^[1-9][0-9]{2,8}(,[1-9][0-9]{2,8})*$ ]] || die "bad vmid list '$template_vmid' (e.g. 9000 or 9000,9001)"
[[ "$user" =~ ^[^@[:space:]]+@[^@![:space:]]+$ ]] || die "bad user '$user' (name@realm)"
[[ "$token" =~ ^[A-Za-z][A-Za-z0-9._-]*$ ]] || die "bad token id '$token'"
[[ -z "$dns" || "$dns" =~ ^[0-9A-Fa-f.:]+(,[0-9A-Fa-f.:]+)*$ ]] || die "bad --dns '$dns' (IP addresses, comma-separated)"
((firewall == 0)) || [[ -n "$template_vmid" ]] || die "--firewall needs --template-vmid (the group is attached to the templates)"
tokenid="$user!$token"
if ((!dry)) && ! command -v "$pveum_cmd" >/dev/null; then
  die "'$pveum_cmd' not found: run this as root on a Proxmox VE node (or see the commands with --dry-run)"
fi

# Prints a command so it can be pasted into a shell: arguments quoted only when they need it
# ('!' too: interactive bash would expand it).
show() { show_cmd "$pveum_cmd" "$@"; }
show_cmd() {
  local a line="$1"
  shift
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then line+=" $a"; else line+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "$line"
}
# pve ARGS...: run pveum (or print it under --dry-run).
pve() {
  if ((dry)); then show "$@"; else "$pveum_cmd" "$@"; fi
}
# pve_keep 'already-pattern' ARGS...: as pve, but an answer saying it is already so is fine.
pve_keep() {
  local pattern="$1" out
  shift
  if ((dry)); then
    show "$@"
    return 0
  fi
  if out="$("$pveum_cmd" "$@" 2>&1)"; then
    [[ -z "$out" ]] || echo "$out"
    return 0
  fi
  if [[ "$out" =~ $pattern ]]; then
    echo "pveum-setup: kept: ${out%%$'\n'*}"
    return 0
  fi
  echo "$out" >&2
  return 1
}

((dry)) && echo "# pveum-setup: dry run, the commands:"
# The role: created, or brought to exactly these privileges.
if ((dry)); then
  show role add "$role" --privs "$PRIVS"
elif ! "$pveum_cmd" role add "$role" --privs "$PRIVS" 2>/dev/null; then
  "$pveum_cmd" role modify "$role" --privs "$PRIVS"
fi
pve_keep "already exists" pool add "$pool" --comment "pve-runners: the runner template, its storage and every runner"
if [[ -n "$template_vmid" ]]; then
  pve_keep "already a pool member" pool modify "$pool" --vms "$template_vmid"
fi
if [[ -n "$storage" ]]; then
  pve_keep "already a pool member" pool modify "$pool" --storage "$storage"
fi
pve_keep "already exists" user add "$user" --comment "pve-runners webhook listener (token only)"

# The token: its secret is printed once by PVE; it goes into the credentials file only.
token_add=(user token add "$user" "$token" --privsep 1 --comment "pve-runners listener" --output-format json)
if ((dry)); then
  show "${token_add[@]}"
  if [[ -n "$token_file" ]]; then echo "# the token's value would be written to $token_file as $tokenid=<secret>"; fi
elif out="$("$pveum_cmd" "${token_add[@]}" 2>&1)"; then
  secret="$(sed -nE 's/.*"value" *: *"([0-9A-Za-z-]+)".*/\1/p' <<<"$out")"
  [[ -n "$secret" ]] || die "pveum answered without a token value"
  if [[ -n "$token_file" ]]; then
    mkdir -p "$(dirname "$token_file")"
    printf '%s=%s\n' "$tokenid" "$secret" >"$token_file.new"
    chmod 0600 "$token_file.new"
    mv "$token_file.new" "$token_file"
    echo "pveum-setup: token $tokenid created; its secret is in $token_file"
  else
    echo "pveum-setup: token $tokenid created. Its secret, shown once (store it as USER@REALM!TOKENID=SECRET):"
    echo "$tokenid=$secret"
  fi
  secret=""
elif [[ "$out" =~ already\ exists ]]; then
  echo "pveum-setup: kept: token $tokenid exists (to rotate it: $pveum_cmd user token remove $user $token, then run this again)"
else
  echo "$out" >&2
  exit 1
fi

for path in "/pool/$pool" "/sdn/zones/localnetwork/$bridge"; do
  pve acl modify "$path" --users "$user" --roles "$role"
  pve acl modify "$path" --tokens "$tokenid" --roles "$role"
done
if ((placement)); then
  if ((dry)); then
    show role add PVERunnersAudit --privs Sys.Audit
  elif ! "$pveum_cmd" role add PVERunnersAudit --privs Sys.Audit 2>/dev/null; then
    "$pveum_cmd" role modify PVERunnersAudit --privs Sys.Audit
  fi
  pve acl modify /nodes --users "$user" --roles PVERunnersAudit
  pve acl modify /nodes --tokens "$tokenid" --roles PVERunnersAudit
fi
if ((firewall)); then
  # pvesh_run ARGS...: run pvesh (or print it under --dry-run).
  pvesh_run() {
    if ((dry)); then show_cmd "$pvesh_cmd" "$@"; else "$pvesh_cmd" "$@"; fi
  }
  group_new=1
  if ((dry)); then
    show_cmd "$pvesh_cmd" create /cluster/firewall/groups --group "$GROUP" --comment "pve-runners: egress of the runners"
  elif ! out="$("$pvesh_cmd" create /cluster/firewall/groups --group "$GROUP" --comment "pve-runners: egress of the runners" 2>&1)"; then
    [[ "$out" =~ already\ exists ]] || { echo "$out" >&2; exit 1; }
    echo "pveum-setup: kept: security group $GROUP exists (its rules are left as they are)"
    group_new=0
  fi
  if ((group_new)); then
    # PVE puts each new rule first: added bottom-up, they read top-down as listed in --help.
    for ((i = ${#PRIVATE_NETS[@]} - 1; i >= 0; i--)); do
      pvesh_run create "/cluster/firewall/groups/$GROUP" --type out --action DROP --dest "${PRIVATE_NETS[$i]}" --enable 1 --comment "no private, link-local or CGNAT destination"
    done
    pvesh_run create "/cluster/firewall/groups/$GROUP" --type out --action DROP --proto udp --sport 67 --enable 1 --comment "runners never answer DHCP"
    if [[ -n "$dns" ]]; then
      IFS=, read -ra resolvers <<<"$dns"
      for r in "${resolvers[@]}"; do
        for proto in tcp udp; do
          pvesh_run create "/cluster/firewall/groups/$GROUP" --type out --action ACCEPT --proto "$proto" --dport 53 --dest "$r" --enable 1 --comment "DNS"
        done
      done
    fi
  fi
  IFS=, read -ra templates <<<"$template_vmid"
  for t in "${templates[@]}"; do
    pvesh_run set "/nodes/localhost/lxc/$t/firewall/options" --enable 1 --policy_in DROP --policy_out ACCEPT --macfilter 1 --dhcp 1 --ndp 1 --radv 0
    if ((dry)) || ! "$pvesh_cmd" get "/nodes/localhost/lxc/$t/firewall/rules" --output-format json | grep -q "\"action\" *: *\"$GROUP\""; then
      pvesh_run create "/nodes/localhost/lxc/$t/firewall/rules" --type group --action "$GROUP" --iface net0 --enable 1 --comment "pve-runners egress"
    else
      echo "pveum-setup: kept: template $t already uses security group $GROUP"
    fi
  done
  if ((dry)); then
    echo "# the datacenter firewall must be on for any of this to apply: $pvesh_cmd set /cluster/firewall/options --enable 1 (see README first)"
  elif ! "$pvesh_cmd" get /cluster/firewall/options --output-format json | grep -q '"enable" *: *"\{0,1\}1'; then
    echo "pveum-setup: WARNING: the datacenter firewall is off, so no guest firewall applies. Turn it on ($pvesh_cmd set /cluster/firewall/options --enable 1) only after reading README \"Network isolation\": it also filters the hosts." >&2
  fi
fi
if [[ -n "$vlan" ]]; then
  echo "# SDN.Use on /sdn/zones/localnetwork/$bridge propagates to VLAN $vlan (/sdn/zones/localnetwork/$bridge/$vlan)"
fi
((dry)) || echo "pveum-setup: done: $tokenid has role $role on /pool/$pool and /sdn/zones/localnetwork/$bridge"
