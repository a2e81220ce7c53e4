# Sourced by the benchmarks: serve_site WORK ACCESS_LOG starts nginx on a free 127.0.0.1 port with
# its own configuration in WORK/nginx, serving WORK/site (ACCESS_LOG: a file, or "off"), and sets
# `port` and `nginx_pid`. Needs `nginx_bin`. The caller stops nginx by its PID.
serve_site() {
    local work=$1 access_log=$2
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/nginx/logs"
    local log_line="access_log off;"
    if [ "$access_log" != off ]; then
        log_line="log_format s '\$status \$request_uri'; access_log $access_log s;"
    fi
    cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    $log_line
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types { text/html html; image/png png; image/jpeg jpg; image/gif gif; text/plain txt; }
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    server {
        listen 127.0.0.1:$port;
        root $work/site;
        index index.html;
    }
}
EOF
    "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/list/1.html" >/dev/null 2>&1 && break
        sleep 0.1
    done
}
