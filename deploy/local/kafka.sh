#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, without Docker.
#
#   deploy/local/kafka.sh start     resolve Kafka via Maven (once), format storage (once),
#                                   start the broker and wait until it answers; prints
#                                   KAFKA_BOOTSTRAP=127.0.0.1:<port> on stdout
#   deploy/local/kafka.sh stop      stop the broker (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s)
#   deploy/local/kafka.sh status    exit 0 if running, 3 if not
#   deploy/local/kafka.sh logs [-f] print (or follow) the broker log
#
# Environment (defaults in brackets):
#   KAFKA_VERSION [4.3.1]            org.apache.kafka:kafka_2.13 version
#   KAFKA_PORT [19092]               PLAINTEXT listener
#   KAFKA_CONTROLLER_PORT [19093]    CONTROLLER listener
#   KAFKA_DATA_DIR [<repo>/.kafka]   config, pid file, broker log and log segments
#   KAFKA_HEAP_OPTS [-Xms512m -Xmx1g]
#   KAFKA_CLUSTER_ID [random]        used when formatting a new data dir
#   KAFKA_START_TIMEOUT [90]  KAFKA_STOP_TIMEOUT [30]   seconds
#   EUROVOC_CACHE [~/.cache/eurovoc-stream]   jars go to $EUROVOC_CACHE/kafka/<version>/libs
# Chatter goes to stderr; stdout carries only the KAFKA_BOOTSTRAP line (start) or status.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_DATA_DIR=$(realpath -m "${KAFKA_DATA_DIR:-$REPO/.kafka}")
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
LIBS=${EUROVOC_CACHE:-$HOME/.cache/eurovoc-stream}/kafka/$KAFKA_VERSION/libs

CONFIG=$KAFKA_DATA_DIR/server.properties
LOG4J_CONFIG=$KAFKA_DATA_DIR/log4j2.properties
BROKER_LOG=$KAFKA_DATA_DIR/server.log
PID_FILE=$KAFKA_DATA_DIR/kafka.pid
BOOTSTRAP_FILE=$KAFKA_DATA_DIR/bootstrap  # address of the running broker
LOG_DIRS=$KAFKA_DATA_DIR/data

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# Prints the pid of this data dir's broker; fails if it is not running.
running_pid() {
    local pid
    [[ -f $PID_FILE ]] && pid=$(<"$PID_FILE") && [[ $(cmdline_of "$pid") == *"kafka.Kafka $CONFIG "* ]] \
        && echo "$pid"
}

# True until broker pid $1 has exited. While a process exits its cmdline is already
# empty; a zombie has exited (reaping it is its parent's business).
broker_alive() {
    local state cmdline
    state=$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]] || return 1
    cmdline=$(cmdline_of "$1")
    [[ -z $cmdline || $cmdline == *"kafka.Kafka $CONFIG "* ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

resolve_libs() {
    [[ -f $LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] && return
    log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION through Maven into $LIBS"
    local tmp=$LIBS.tmp.$$ output
    output=$(mvn -q -B -f "$HERE/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" 2>&1) \
        || { echo "$output" >&2; rm -rf "$tmp"; die "Maven could not resolve Kafka $KAFKA_VERSION"; }
    mv -T "$tmp" "$LIBS" 2>/dev/null || rm -rf "$tmp"  # lost a race with another start: fine
}

write_config() {
    cat >"$CONFIG" <<EOF
# Written by deploy/local/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
log.dirs=$LOG_DIRS
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    cat >"$LOG4J_CONFIG" <<'EOF'
# Console output; kafka.sh redirects the JVM's stdout to server.log in the data dir.
appender.console.type=Console
appender.console.name=STDOUT
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.state.name=state.change.logger
logger.state.level=WARN
EOF
}

format_storage() {
    [[ -f $LOG_DIRS/meta.properties ]] && return
    local cluster_id output
    # $KAFKA_CLUSTER_ID, else a random UUID in Kafka's URL-safe base64 form; it may start with '-', so it is passed as
    # --cluster-id=ID (a separate argument starting with '-' would be read as an option).
    cluster_id=${KAFKA_CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')}
    log "formatting $LOG_DIRS (cluster id $cluster_id)"
    output=$(java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONFIG" kafka.tools.StorageTool \
        format --standalone --cluster-id="$cluster_id" --ignore-formatted -c "$CONFIG" 2>&1) \
        || { echo "$output" >&2; die "formatting $LOG_DIRS failed"; }
}

# Succeeds once the broker at $1 answers an admin request (metadata), or, without
# a Python that has kafka-python, once it has logged its startup.
broker_answers() {
    local python
    for python in "$REPO/.venv/bin/python" python3; do
        if "$python" -c 'import kafka' 2>/dev/null; then
            timeout 20 "$python" - "$1" 2>/dev/null <<'EOF'
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], bootstrap_timeout_ms=3000,
                         request_timeout_ms=5000)
admin.list_topics()
admin.close()
EOF
            return
        fi
    done
    grep -q 'Kafka Server started' "$BROKER_LOG"
}

fail_start() {
    log "error: $1; last lines of $BROKER_LOG:"
    tail -n 40 "$BROKER_LOG" >&2 || true
    stop >/dev/null 2>&1 || true
    exit 1
}

wait_until_ready() {
    local pid=$1 bootstrap=$2 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    until broker_answers "$bootstrap"; do
        broker_alive "$pid" || fail_start "the broker exited during startup"
        ((SECONDS < deadline)) || fail_start "the broker did not answer within ${KAFKA_START_TIMEOUT}s"
        sleep 1
    done
}

start() {
    local pid
    if pid=$(running_pid); then
        log "already running (pid $pid, data dir $KAFKA_DATA_DIR)"
        wait_until_ready "$pid" "$(<"$BOOTSTRAP_FILE")"
        echo "KAFKA_BOOTSTRAP=$(<"$BOOTSTRAP_FILE")"
        return
    fi
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another process" \
            "(not the broker of $KAFKA_DATA_DIR); choose others with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    done
    command -v java >/dev/null || die "java (17+) is not on PATH"
    resolve_libs
    mkdir -p "$KAFKA_DATA_DIR"
    write_config
    format_storage
    [[ -f $BROKER_LOG ]] && mv -f "$BROKER_LOG" "$BROKER_LOG.prev"
    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log: $BROKER_LOG)"
    # KAFKA_HEAP_OPTS is a list of JVM flags, hence unquoted. setsid: Ctrl-C in the
    # caller's terminal must not reach the broker.
    # shellcheck disable=SC2086
    setsid nohup java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J_CONFIG" -cp "$LIBS/*" \
        kafka.Kafka "$CONFIG" >"$BROKER_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "127.0.0.1:$KAFKA_PORT" >"$BOOTSTRAP_FILE"
    wait_until_ready "$pid" "127.0.0.1:$KAFKA_PORT"
    log "ready (pid $pid)"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
}

stop() {
    local pid deadline
    if ! pid=$(running_pid); then
        log "not running (data dir $KAFKA_DATA_DIR)"
        rm -f "$PID_FILE" "$BOOTSTRAP_FILE"
        return
    fi
    log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while broker_alive "$pid" && ((SECONDS < deadline)); do sleep 0.5; done
    if broker_alive "$pid"; then
        log "pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while broker_alive "$pid"; do sleep 0.2; done
    fi
    rm -f "$PID_FILE" "$BOOTSTRAP_FILE"
    log "stopped"
}

status() {
    local pid
    if pid=$(running_pid); then
        echo "running: pid $pid, KAFKA_BOOTSTRAP=$(<"$BOOTSTRAP_FILE"), data dir $KAFKA_DATA_DIR"
    else
        echo "not running (data dir $KAFKA_DATA_DIR)"
        exit 3
    fi
}

logs() {
    [[ -f $BROKER_LOG ]] || die "no log at $BROKER_LOG"
    if [[ ${1:-} == -f ]]; then tail -n 100 -F "$BROKER_LOG"; else cat "$BROKER_LOG"; fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    logs) logs "${2:-}" ;;
    *) echo "usage: $0 start|stop|status|logs [-f]" >&2; exit 2 ;;
esac
