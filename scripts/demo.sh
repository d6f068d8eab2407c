#!/usr/bin/env bash
# Runs spot-agent end to end on local peers, no AWS account: moto server plays
# the EC2 and ELB APIs, amazon-ec2-metadata-mock plays the instance metadata
# service, both on 127.0.0.1. It walks through one spot interruption notice:
# the hello page, the metrics, the readiness flip, the deregistration, the exit.
set -euo pipefail

cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	die "no free port"
}

wait_port() {
	for _ in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listening on 127.0.0.1:$1"
}

# Prerequisites: moto (in the machine image's Python), the AWS CLI, curl.
python=""
for c in "${MOTO_PYTHON:-}" "$HOME"/.pyenv/versions/*/bin/python3 python3; do
	[ -n "$c" ] && "$c" -c 'import moto.server' 2>/dev/null && { python=$c; break; }
done
[ -n "$python" ] || die "no python3 with moto: pip install 'moto[server]==5.2.1', or set MOTO_PYTHON"
command -v aws >/dev/null || die "no AWS CLI: apt-get install awscli"
command -v curl >/dev/null || die "no curl: apt-get install curl"

step "Build spot-agent and the metadata mock"
go build -o "$work/spot-agent" ./cmd/spot-agent
aemm=$(go tool -n ec2-metadata-mock)
"$work/spot-agent" version

moto_port=$(free_port)
step "Start moto server on 127.0.0.1:$moto_port (EC2 and ELB APIs)"
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$python" -m moto.server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$moto_port"

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
aws_local() { aws --endpoint-url "http://127.0.0.1:$moto_port" "$@"; }

step "Create a target group and an instance tagged with it, registered (as the fleet would)"
vpc=$(aws_local ec2 create-vpc --cidr-block 10.0.0.0/16 --query Vpc.VpcId --output text)
tg=$(aws_local elbv2 create-target-group --name demo-web --protocol HTTP --port 80 --vpc-id "$vpc" \
	--health-check-path /healthz --query 'TargetGroups[0].TargetGroupArn' --output text)
aws_local elbv2 modify-target-group-attributes --target-group-arn "$tg" \
	--attributes Key=deregistration_delay.timeout_seconds,Value=10 >/dev/null
instance=$(aws_local ec2 run-instances --image-id ami-12c6146b --instance-type c5.large --count 1 \
	--query 'Instances[0].InstanceId' --output text)
aws_local ec2 create-tags --resources "$instance" --tags "Key=loadBalancerTargetGroup,Value=$tg"
aws_local elbv2 register-targets --target-group-arn "$tg" --targets "Id=$instance,Port=80"
echo "instance $instance in $tg"

notice_at=$(date -u -d '+12 seconds' +%Y-%m-%dT%H:%M:%SZ)
deadline=$(date -u -d '+32 seconds' +%Y-%m-%dT%H:%M:%SZ)
imds_port=$(free_port)
step "Start the metadata mock on 127.0.0.1:$imds_port: IMDSv2 only, a spot notice at $notice_at for $deadline"
mkdir -p "$work/home"
cat >"$work/aemm.json" <<EOF
{"metadata":{"values":{"instance-id":"$instance","instance-type":"c5.large","placement-availability-zone":"us-east-1a","placement-region":"us-east-1"}},
 "dynamic":{"values":{"instance-identity-document":{"instanceId":"$instance","instanceType":"c5.large","region":"us-east-1","availabilityZone":"us-east-1a","accountId":"123456789012","imageId":"ami-12c6146b","privateIp":"10.0.0.10","architecture":"x86_64","pendingTime":"2026-01-01T00:00:00Z","version":"2017-09-30"}}}}
EOF
HOME="$work/home" "$aemm" spot -c "$work/aemm.json" -n 127.0.0.1 -p "$imds_port" -I -x -1 \
	--mock-trigger-time "$notice_at" -t "$deadline" --rebalance-delay-sec 86400 >"$work/aemm.log" 2>&1 &
pids+=($!)
wait_port "$imds_port"

web_port=$(free_port)
admin_port=$(free_port)
step "Start spot-agent (traffic on 127.0.0.1:$web_port, metrics on 127.0.0.1:$admin_port)"
AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" "$work/spot-agent" run \
	--listen "127.0.0.1:$web_port" --admin-listen "127.0.0.1:$admin_port" \
	--imds-endpoint "http://127.0.0.1:$imds_port" --exit-margin 5s >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
tail -n +1 -f "$work/agent.log" | sed -u 's/^/  agent | /' &
pids+=($!)
wait_port "$web_port"
sleep 1

step "The hello page and the load balancer's health check"
curl -s "http://127.0.0.1:$web_port/"
curl -s -o /dev/null -w 'GET /healthz -> %{http_code}\n' "http://127.0.0.1:$web_port/healthz"
step "Target health in the (mock) load balancer"
aws_local elbv2 describe-target-health --target-group-arn "$tg" \
	--query 'TargetHealthDescriptions[].[Target.Id,Target.Port,TargetHealth.State]' --output text
step "Metrics"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^spot_agent_(instance_info|target_groups|draining|imds_requests_total\{path="spot)'

step "Waiting for the interruption notice at $notice_at"
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$web_port/healthz")" = 503 ]; do sleep 0.1; done
echo "GET /healthz -> 503 at $(date -u +%H:%M:%S.%N | cut -c1-12): readiness failed, the load balancer stops routing here"
sleep 0.5
step "Target health after the notice"
health=$(aws_local elbv2 describe-target-health --target-group-arn "$tg" \
	--query 'TargetHealthDescriptions[].[Target.Id,TargetHealth.State]' --output text)
echo "${health:-(no targets: $instance left the group)}"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^spot_agent_(notices_total|deregistrations_total|draining|deadline_remaining_seconds|notice_to_deregistration_seconds_(sum|count))'
echo "the page still answers while draining: $(curl -s "http://127.0.0.1:$web_port/")"

step "Waiting for the agent to exit before $deadline"
status=0
wait "$agent_pid" || status=$?
echo "spot-agent exited with status $status at $(date -u +%H:%M:%S), before the deadline $deadline"
[ "$status" = 0 ] || die "unexpected exit status $status"
