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
#   KAFKA_SASL_SSL_PORT [off]        opt-in SASL_SSL listener (SCRAM-SHA-512 over TLS) on this port,
#                                    beside PLAINTEXT; on a new data dir only (users are created
#                                    when storage is formatted). A throw-away CA and broker
#                                    certificate (keytool) go to <data dir>/tls, one random
#                                    password per user to <data dir>/sasl/<user>.password.
#   KAFKA_SASL_USERS [eurovoc]       comma-separated SCRAM users to create
# Chatter goes to stderr; stdout carries only KEY=value lines (start: KAFKA_BOOTSTRAP, and with
# SASL_SSL also KAFKA_SASL_SSL_BOOTSTRAP, KAFKA_SSL_CAFILE, KAFKA_SASL_USERNAME and
# KAFKA_SASL_PASSWORD_FILE of the first user) or status.
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
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
KAFKA_SASL_USERS=${KAFKA_SASL_USERS:-eurovoc}

CONFIG=$KAFKA_DATA_DIR/server.properties
LOG4J_CONFIG=$KAFKA_DATA_DIR/log4j2.properties
BROKER_LOG=$KAFKA_DATA_DIR/server.log
PID_FILE=$KAFKA_DATA_DIR/kafka.pid
BOOTSTRAP_FILE=$KAFKA_DATA_DIR/bootstrap  # address of the running broker
LOG_DIRS=$KAFKA_DATA_DIR/data
TLS_DIR=$KAFKA_DATA_DIR/tls
SASL_DIR=$KAFKA_DATA_DIR/sasl

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

random_secret() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

# A throw-away CA and a broker certificate it signed (localhost, 127.0.0.1): PKCS12 for the
# broker, the CA as PEM for clients (their ssl_cafile).
make_certificates() {
    [[ -f $TLS_DIR/broker.p12 ]] && return
    command -v keytool >/dev/null || die "keytool (from the JDK) is needed for the SASL_SSL listener"
    log "creating a throw-away CA and broker certificate in $TLS_DIR"
    local tmp=$TLS_DIR.tmp.$$ pass
    rm -rf "$tmp" && mkdir -p "$tmp" && chmod 700 "$tmp"
    pass=$(random_secret)
    echo "$pass" >"$tmp/keystore.password"
    local kt=(keytool -storetype PKCS12 -storepass "$pass" -keypass "$pass")
    { "${kt[@]}" -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 365 \
          -dname "CN=eurovoc-stream throw-away CA" -ext bc:c -keystore "$tmp/ca.p12"
      "${kt[@]}" -exportcert -rfc -alias ca -keystore "$tmp/ca.p12" -file "$tmp/ca.pem"
      "${kt[@]}" -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 365 \
          -dname "CN=localhost" -keystore "$tmp/broker.p12"
      "${kt[@]}" -certreq -alias broker -keystore "$tmp/broker.p12" -file "$tmp/broker.csr"
      "${kt[@]}" -gencert -alias ca -keystore "$tmp/ca.p12" -infile "$tmp/broker.csr" -rfc \
          -outfile "$tmp/broker.pem" -validity 365 -ext "SAN=dns:localhost,ip:127.0.0.1" \
          -ext "EKU=serverAuth"
      "${kt[@]}" -importcert -noprompt -alias ca -file "$tmp/ca.pem" -keystore "$tmp/broker.p12"
      "${kt[@]}" -importcert -alias broker -file "$tmp/broker.pem" -keystore "$tmp/broker.p12"
    } >"$tmp/keytool.log" 2>&1 || { cat "$tmp/keytool.log" >&2; rm -rf "$tmp"; die "keytool failed"; }
    rm -f "$tmp/broker.csr" "$tmp/keytool.log"
    mv -T "$tmp" "$TLS_DIR"
}

# The SASL_SSL listener's settings (nothing without KAFKA_SASL_SSL_PORT).
sasl_ssl_config() {
    [[ -n $KAFKA_SASL_SSL_PORT ]] || return 0
    local pass
    pass=$(<"$TLS_DIR/keystore.password")
    printf '%s\n' \
        "sasl.enabled.mechanisms=SCRAM-SHA-512" \
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
        "ssl.keystore.type=PKCS12" \
        "ssl.keystore.location=$TLS_DIR/broker.p12" \
        "ssl.keystore.password=$pass" \
        "ssl.key.password=$pass" \
        "ssl.client.auth=none"
}

write_config() {
    local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT" protocols="PLAINTEXT:PLAINTEXT"
    if [[ -n $KAFKA_SASL_SSL_PORT ]]; then
        listeners+=",SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        protocols+=",SASL_SSL:SASL_SSL"
    fi
    (umask 077 && : >"$CONFIG")  # it may hold the keystore password
    cat >"$CONFIG" <<EOF
# Written by deploy/local/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
listeners=$listeners,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listeners,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
listener.security.protocol.map=$protocols,CONTROLLER:PLAINTEXT
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
$(sasl_ssl_config)
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

# --add-scram arguments for the formatting: one random password per user, kept in $SASL_DIR.
scram_arguments() {
    [[ -n $KAFKA_SASL_SSL_PORT ]] || return 0
    local user
    mkdir -p "$SASL_DIR" && chmod 700 "$SASL_DIR"
    for user in ${KAFKA_SASL_USERS//,/ }; do
        [[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_SASL_USERS: invalid user name '$user'"
        [[ -f $SASL_DIR/$user.password ]] || (umask 077 && random_secret >"$SASL_DIR/$user.password")
        printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$user,password=$(<"$SASL_DIR/$user.password")]"
    done
}

format_storage() {
    if [[ -f $LOG_DIRS/meta.properties ]]; then
        [[ -z $KAFKA_SASL_SSL_PORT || -d $SASL_DIR ]] || die "$KAFKA_DATA_DIR was formatted" \
            "without SASL users; use a new KAFKA_DATA_DIR for the SASL_SSL listener"
        return
    fi
    local cluster_id output scram=()
    output=$(scram_arguments) || exit 1
    [[ -z $output ]] || mapfile -t scram <<<"$output"
    # $KAFKA_CLUSTER_ID, else a random UUID in Kafka's URL-safe base64 form; it may start with '-', so it is passed as
    # --cluster-id=ID (a separate argument starting with '-' would be read as an option).
    cluster_id=${KAFKA_CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')}
    log "formatting $LOG_DIRS (cluster id $cluster_id)"
    output=$(java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONFIG" kafka.tools.StorageTool \
        format --standalone --cluster-id="$cluster_id" --ignore-formatted -c "$CONFIG" "${scram[@]}" 2>&1) \
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
        print_addresses
        return
    fi
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" $KAFKA_SASL_SSL_PORT; do
        port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another process" \
            "(not the broker of $KAFKA_DATA_DIR); choose others with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    done
    command -v java >/dev/null || die "java (17+) is not on PATH"
    resolve_libs
    mkdir -p "$KAFKA_DATA_DIR"
    [[ -z $KAFKA_SASL_SSL_PORT ]] || make_certificates
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
    print_addresses
}

# What clients need, as KEY=value lines: eval "$(deploy/local/kafka.sh start)".
print_addresses() {
    echo "KAFKA_BOOTSTRAP=$(<"$BOOTSTRAP_FILE")"
    if [[ -n $KAFKA_SASL_SSL_PORT ]]; then
        local user=${KAFKA_SASL_USERS%%,*}
        echo "KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_SSL_PORT"
        echo "KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem"
        echo "KAFKA_SASL_USERNAME=$user"
        echo "KAFKA_SASL_PASSWORD_FILE=$SASL_DIR/$user.password"
    fi
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
