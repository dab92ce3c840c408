#!/usr/bin/env bash
# Builds the runtime image from the Dockerfile and checks a container of it, the way CI can:
# no image can be pulled, and the workspace must not be compiled twice. So the image is built
# with `--target prebuilt` on a debootstrapped Debian (scripts/lib.sh `secantus_image`), from
# the server binary and site the test run already built. The check: the container starts as a
# user without privileges in production mode, answers readiness and a registration and login
# against a SecantusDB container, serves the site, serves metrics on their own port only, turns
# healthy by its own HEALTHCHECK, and exits 0 on SIGTERM.
source "$(dirname "$0")/lib.sh"

binary="target/debug/latchkey-server"
if [[ ! -x "$binary" ]]; then
  # Only links when `cargo test --workspace` ran before (as in CI).
  cargo build --locked -q -p latchkey-tests --bin latchkey-server
fi
[[ -f web/dist/site/index.html ]] || bash scripts/build-site.sh

docker_up
base="$(secantus_image)"
image="latchkey:ci"
step "building $image (--target prebuilt on $base)"
stage="docker/prebuilt"
find "$stage" -mindepth 1 ! -name README.md -exec rm -rf {} +
# Without its debug information a test build is a tenth of its size.
strip -o "$stage/latchkey" "$binary" 2>/dev/null || cp "$binary" "$stage/latchkey"
cp -r web/dist/site "$stage/site"
"$DOCKER" build -q --target prebuilt --build-arg "RUNTIME_IMAGE=$base" -t "$image" . >/dev/null
find "$stage" -mindepth 1 ! -name README.md -exec rm -rf {} +

db_port="$(free_port)"
app_port="$(free_port)"
metrics_port="$(free_port)"
db="latchkey-ci-db-$$"
app="latchkey-ci-app-$$"
on_exit "\"$DOCKER\" rm -f $db $app >/dev/null 2>&1"
"$DOCKER" run -d --name "$db" --network host "$base" \
  python3 -m secantus --host 127.0.0.1 --port "$db_port" --storage-path :memory: >/dev/null
"$DOCKER" run -d --name "$app" --network host \
  -e HOST=127.0.0.1 -e PORT="$app_port" -e METRICS_ADDR="127.0.0.1:$metrics_port" \
  -e DB_URI="mongodb://127.0.0.1:$db_port/?directConnection=true" \
  -e JWT_SECRET="image-check-secret-0123456789-abcdefghijkl" \
  -e SMTP_URL="smtp://127.0.0.1:$(free_port)" -e PUBLIC_URL="https://login.example.test" \
  "$image" >/dev/null

step "checking the container"
user="$("$DOCKER" exec "$app" id -u)"
[[ "$user" != "0" ]] || { echo "the server runs as root" >&2; exit 1; }
python3 - "$app_port" "$metrics_port" <<'PY'
import json, sys, time, urllib.request, urllib.error
base = f"http://127.0.0.1:{sys.argv[1]}"
metrics = f"http://127.0.0.1:{sys.argv[2]}/metrics"

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()

deadline = time.time() + 60
while True:
    try:
        status, _ = call("GET", "/api/health/ready")
        if status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("the container never became ready")
    time.sleep(0.2)
account = {"email": "image@example.com", "password": "correct horse battery staple"}
status, body = call("POST", "/api/auth/register", account)
assert status == 201, (status, body)
status, body = call("POST", "/api/auth/login", account)
assert status == 200 and "access_token" in json.loads(body), (status, body)
status, page = call("GET", "/")
assert status == 200 and b"<html" in page.lower(), (status, page[:200])
status, _ = call("GET", "/metrics")
assert status == 404, ("metrics on the public port", status)
with urllib.request.urlopen(metrics, timeout=5) as response:
    text = response.read().decode()
assert 'latchkey_logins_total{outcome="succeeded"} 1' in text, text[:2000]
print("production mode: ready, registered, logged in, site served, metrics on their own port",
      file=sys.stderr)
PY
for _ in $(seq 1 60); do
  health="$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$app")"
  [[ "$health" == "healthy" ]] && break
  sleep 1
done
[[ "$health" == "healthy" ]] || { echo "the HEALTHCHECK says $health" >&2; "$DOCKER" logs "$app" | tail -20 >&2; exit 1; }
"$DOCKER" stop -t 20 "$app" >/dev/null
code="$("$DOCKER" inspect --format '{{.State.ExitCode}}' "$app")"
[[ "$code" == "0" ]] || { echo "exit code $code after SIGTERM" >&2; "$DOCKER" logs "$app" | tail -20 >&2; exit 1; }
step "image $image: non-root ($user), ready, login works, healthy, exits 0 on SIGTERM"
