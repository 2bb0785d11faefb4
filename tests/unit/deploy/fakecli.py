"""Fake aws / kubectl / helm / eksctl / docker for the deploy-script tests.

Installed into a temp dir as executables named after the tools (see `install`). Each call is
appended to calls.jsonl; aws and kubectl keep a small state (state.json) so that a test can check
that what one script created, another script removed. Unknown calls fail loudly (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

STATE_DIR = Path(os.environ.get("FAKE_STATE", "."))
STATE_FILE = STATE_DIR / "state.json"


def load() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def save(state: dict) -> None:
    STATE_FILE.write_text(json.dumps(state, indent=1, sort_keys=True))


def parse(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    positional: list[str] = []
    opts: dict[str, list[str]] = {}
    current = None
    for a in args:
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            opts.setdefault(key, [])
            if eq:
                opts[key].append(value)
            current = None if eq else key
        elif a.startswith("-") and len(a) == 2:
            opts.setdefault(a[1:], [])
            current = a[1:]
        elif current is not None:
            opts[current].append(a)
        else:
            positional.append(a)
    return positional, opts


def one(opts: dict, key: str) -> str:
    return opts[key][0]


def read_param(value: str) -> str:
    return Path(value[len("file://") :]).read_text() if value.startswith("file://") else value


class Absent(Exception):
    pass


def aws(args: list[str]) -> int:
    pos, o = parse(args)
    service, op = pos[0], pos[1]
    st = load()
    region = os.environ.get("AWS_REGION", "eu-west-1")

    def need(key: str) -> dict:
        if key not in st:
            raise Absent(key)
        return st[key]

    resp: object = {}
    k = None
    if service == "sts" and op == "get-caller-identity":
        resp = {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/test"}
    elif service == "s3api":
        k = f"s3:{one(o, 'bucket')}"
        if op == "create-bucket":
            st[k] = {}
        elif op == "head-bucket":
            need(k)
        elif op == "delete-bucket":
            need(k)
            del st[k]
        elif op == "list-object-versions":
            resp = {"Versions": [], "DeleteMarkers": []}
        elif op.startswith("put-"):
            need(k)[op] = o
        else:
            return unknown(args)
    elif service == "dynamodb":
        k = f"dynamodb:{one(o, 'table-name')}"
        if op == "create-table":
            st[k] = {"create": o}
        elif op in ("describe-table",):
            created = need(k).get("create", {})
            key_schema = [dict(p.split("=", 1) for p in s.split(",")) for s in created.get("key-schema", [])]
            resp = {"Table": {"TableName": one(o, "table-name"), "TableStatus": "ACTIVE", "KeySchema": key_schema}}
        elif op == "delete-table":
            need(k)
            del st[k]
        elif op == "wait":
            pass
        elif op == "describe-time-to-live":
            resp = {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED" if "ttl" in need(k) else "DISABLED"}}
        elif op == "update-time-to-live":
            need(k)["ttl"] = o["time-to-live-specification"]
        elif op == "update-continuous-backups":
            need(k)["pitr"] = o["point-in-time-recovery-specification"]
        else:
            return unknown(args)
    elif service == "cognito-idp":
        pools = {v["name"]: key.split(":", 1)[1] for key, v in st.items() if key.startswith("cognito-pool:")}
        if op == "create-user-pool":
            name = one(o, "pool-name")
            pid = f"{region}_{hashlib.sha1(name.encode()).hexdigest()[:9]}"
            st[f"cognito-pool:{pid}"] = {"name": name, "schema": o.get("schema"), "opts": o}
            resp = {"UserPool": {"Id": pid, "Name": name}}
        elif op == "list-user-pools":
            resp = {"UserPools": [{"Name": n, "Id": i} for n, i in pools.items()]}
        elif op == "delete-user-pool":
            pid = one(o, "user-pool-id")
            need(f"cognito-pool:{pid}")
            if any(v.get("pool") == pid for key, v in st.items() if key.startswith("cognito-domain:")):
                print("InvalidParameterException: delete the domain first", file=sys.stderr)
                return 254
            for key in [
                key
                for key, v in st.items()
                if key == f"cognito-pool:{pid}"
                or (key.startswith(("cognito-client:", "cognito-group:")) and v["pool"] == pid)
            ]:
                del st[key]
        elif op == "create-user-pool-domain":
            st[f"cognito-domain:{one(o, 'domain')}"] = {"pool": one(o, "user-pool-id")}
        elif op == "describe-user-pool-domain":
            d = st.get(f"cognito-domain:{one(o, 'domain')}")
            resp = {"DomainDescription": {"UserPoolId": d["pool"], "Domain": one(o, "domain")} if d else {}}
        elif op == "delete-user-pool-domain":
            need(f"cognito-domain:{one(o, 'domain')}")
            del st[f"cognito-domain:{one(o, 'domain')}"]
        elif op == "create-user-pool-client":
            pid = one(o, "user-pool-id")
            need(f"cognito-pool:{pid}")
            cid = hashlib.sha1(one(o, "client-name").encode()).hexdigest()[:26]
            st[f"cognito-client:{cid}"] = {"pool": pid, "name": one(o, "client-name"), "opts": o}
            resp = {"UserPoolClient": {"ClientId": cid}}
        elif op == "list-user-pool-clients":
            pid = one(o, "user-pool-id")
            resp = {
                "UserPoolClients": [
                    {"ClientName": v["name"], "ClientId": key.split(":", 1)[1]}
                    for key, v in st.items()
                    if key.startswith("cognito-client:") and v["pool"] == pid
                ]
            }
        elif op == "get-group":
            need(f"cognito-group:{one(o, 'user-pool-id')}:{one(o, 'group-name')}")
        elif op == "create-group":
            need(f"cognito-pool:{one(o, 'user-pool-id')}")
            st[f"cognito-group:{one(o, 'user-pool-id')}:{one(o, 'group-name')}"] = {"pool": one(o, "user-pool-id")}
        elif op == "describe-user-pool-client":
            need(f"cognito-client:{one(o, 'client-id')}")
            resp = {"UserPoolClient": {"ClientId": one(o, "client-id"), "ClientSecret": "fake-client-secret"}}
        else:
            return unknown(args)
    elif service == "secretsmanager":
        k = f"secret:{one(o, 'name' if op == 'create-secret' else 'secret-id')}"
        if op == "create-secret":
            st[k] = {"SecretString": read_param(one(o, "secret-string"))}
        elif op == "describe-secret":
            need(k)
        elif op == "get-secret-value":
            resp = {"SecretString": need(k)["SecretString"]}
        elif op == "delete-secret":
            need(k)
            del st[k]
        else:
            return unknown(args)
    elif service == "iam":
        k = f"iam-role:{one(o, 'role-name')}"
        if op == "create-role":
            st[k] = {"trust": json.loads(read_param(one(o, "assume-role-policy-document")))}
        elif op == "get-role":
            need(k)
        elif op == "update-assume-role-policy":
            need(k)["trust"] = json.loads(read_param(one(o, "policy-document")))
        elif op == "put-role-policy":
            need(k)
            st[f"iam-policy:{one(o, 'role-name')}:{one(o, 'policy-name')}"] = json.loads(
                read_param(one(o, "policy-document"))
            )
        elif op == "get-role-policy":
            resp = {"PolicyDocument": need(f"iam-policy:{one(o, 'role-name')}:{one(o, 'policy-name')}")}
        elif op == "delete-role-policy":
            pk = f"iam-policy:{one(o, 'role-name')}:{one(o, 'policy-name')}"
            need(pk)
            del st[pk]
        elif op == "delete-role":
            need(k)
            if any(key.startswith(f"iam-policy:{one(o, 'role-name')}:") for key in st):
                print("DeleteConflict: role has policies", file=sys.stderr)
                return 254
            del st[k]
        else:
            return unknown(args)
    elif service == "eks":
        if op == "describe-cluster":
            resp = {
                "cluster": {
                    "identity": {"oidc": {"issuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/FAKE"}},
                    "resourcesVpcConfig": {
                        "vpcId": "vpc-0fake",
                        "subnetIds": ["subnet-0a", "subnet-0b"],
                        "clusterSecurityGroupId": "sg-0cluster",
                    },
                }
            }
        elif op == "update-kubeconfig":
            pass
        else:
            return unknown(args)
    elif service == "rds":
        if op in ("create-db-subnet-group", "describe-db-subnet-groups"):
            k = f"rds-subnet-group:{one(o, 'db-subnet-group-name')}"
            if op.startswith("create"):
                st[k] = o
            else:
                need(k)
        elif op in ("create-db-cluster", "describe-db-clusters"):
            k = f"rds-cluster:{one(o, 'db-cluster-identifier')}"
            if op.startswith("create"):
                arn = f"arn:aws:secretsmanager:{region}:123456789012:secret:rds!cluster-fake"
                st[k] = {"opts": o, "Endpoint": f"{one(o, 'db-cluster-identifier')}.cluster-fake.{region}.rds.amazonaws.com",
                         "DbClusterResourceId": "cluster-FAKERESOURCEID", "MasterUserSecret": {"SecretArn": arn}}  # fmt: skip
                st[f"secret:{arn}"] = {"SecretString": json.dumps({"username": "ragadmin", "password": "fake-pw"})}
            else:
                resp = {"DBClusters": [{k2: v for k2, v in need(k).items() if k2 != "opts"}]}
        elif op in ("create-db-instance", "describe-db-instances"):
            k = f"rds-instance:{one(o, 'db-instance-identifier')}"
            if op.startswith("create"):
                st[k] = o
            else:
                need(k)
        elif op == "wait":
            pass
        else:
            return unknown(args)
    elif service == "ec2":
        if op == "describe-security-groups":
            prefix = "Name=group-name,Values="
            name = next(f.removeprefix(prefix) for f in o["filters"] if f.startswith(prefix))
            found = [v for key, v in st.items() if key == f"ec2-sg:{name}"]
            resp = {"SecurityGroups": [{"GroupId": found[0]["id"]}] if found else []}
        elif op == "create-security-group":
            k = f"ec2-sg:{one(o, 'group-name')}"
            st[k] = {"id": "sg-0rag", "opts": o}
            resp = {"GroupId": "sg-0rag"}
        elif op == "authorize-security-group-ingress":
            sgs = [key for key, v in st.items() if key.startswith("ec2-sg:") and v["id"] == one(o, "group-id")]
            st[sgs[0]]["ingress"] = o["ip-permissions"]
        elif op == "describe-vpcs" and one(o, "vpc-ids") == "vpc-0fake":
            resp = {"Vpcs": [{"VpcId": "vpc-0fake", "CidrBlock": "10.20.0.0/16"}]}
        else:
            return unknown(args)
    elif service == "ecr":
        if op == "get-login-password":
            print("fake-token")
            return 0
        k = f"ecr:{one(o, 'repository-name') if 'repository-name' in o else one(o, 'repository-names')}"
        if op == "describe-repositories":
            need(k)
        elif op == "create-repository":
            st[k] = {}
        elif op == "describe-images":
            raise Absent(k)
        else:
            return unknown(args)
    else:
        return unknown(args)
    save(st)
    if "query" in o:
        import jmespath  # lazily: every fake call is a new process

        resp = jmespath.search(one(o, "query"), resp)
    if o.get("output") == ["text"]:
        print("None" if resp is None else "\t".join(map(str, resp)) if isinstance(resp, list) else resp)
    else:
        print(json.dumps(resp))
    return 0


def kubectl(args: list[str]) -> int:
    import yaml  # lazily: every fake call is a new process

    pos, o = parse(args)
    st = load()
    verb = pos[0]
    ns = (o.get("n") or o.get("namespace") or ["default"])[0]
    if verb == "apply":
        if "dry-run" in o and o["dry-run"] in (["server"], ["client"]):
            return 0
        files = o.get("f", [])
        for f in files:
            text = sys.stdin.read() if f == "-" else Path(f).read_text()
            for doc in yaml.safe_load_all(text):
                if doc:
                    md = doc["metadata"]
                    key = f"k8s:{md.get('namespace', '')}/{doc['kind']}/{md['name']}"
                    st[key] = {"labels": md.get("labels", {})}
        save(st)
        return 0
    if verb == "create" and pos[1] == "secret":
        assert o.get("dry-run") == ["client"], "kubectl create only as a generator (--dry-run=client)"
        print(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": pos[3], "namespace": ns}}))
        return 0
    if verb == "delete":
        kinds = {
            "namespace": "Namespace",
            "secret": "Secret",
            "job": "Job",
            "authorizationpolicies.security.istio.io": "AuthorizationPolicy",
        }
        kind = kinds[pos[1]]
        for name in pos[2:]:
            if kind == "Namespace":
                for key in [k for k in st if k.startswith(f"k8s:{name}/") or k == f"k8s:/Namespace/{name}"]:
                    del st[key]
            else:
                st.pop(f"k8s:{ns}/{kind}/{name}", None)
        save(st)
        return 0
    if verb == "get":
        if pos[1] == "namespaces":
            for key, v in sorted(st.items()):
                if key.startswith("k8s:/Namespace/") and v["labels"].get("app.kubernetes.io/name") == "oauth2-proxy":
                    print(v["labels"]["tenant-rag.io/tenant"])
            return 0
        if pos[1] == "secret":
            return 0 if f"k8s:{ns}/Secret/{pos[2]}" in st else 1
        if pos[1] == "service":
            print("fake-nlb.elb.amazonaws.com")
            return 0
    if verb in ("rollout", "wait", "logs"):
        return 0
    return unknown(["kubectl", *args])


def passthrough(args: list[str]) -> int:
    return 0


def eksctl(args: list[str]) -> int:
    if args[:2] == ["get", "cluster"]:
        return 1
    return 0


def helm(args: list[str]) -> int:
    # keep the content of the values files (they are temp files of the script)
    _pos, o = parse(args)
    values = [Path(f).read_text() for f in o.get("f", [])]
    with (STATE_DIR / "helm-values.jsonl").open("a") as fh:
        fh.write(json.dumps({"args": args, "values": values}) + "\n")
    return 0


def docker(args: list[str]) -> int:
    if args and args[0] == "login":
        sys.stdin.read()
    return 0


def psql(args: list[str]) -> int:
    """Records the SQL file, the connection options and PGPASSWORD/PGSSLMODE (never on the command line)."""
    _pos, o = parse(args)
    with (STATE_DIR / "psql.jsonl").open("a") as fh:
        entry = {"args": args, "sql": Path(one(o, "file")).read_text(), "password": os.environ.get("PGPASSWORD"),
                 "sslmode": os.environ.get("PGSSLMODE")}  # fmt: skip
        fh.write(json.dumps(entry) + "\n")
    return 0


def unknown(args: list[str]) -> int:
    print(f"fakecli: unexpected call {args}", file=sys.stderr)
    return 2


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with (STATE_DIR / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps([name, *args]) + "\n")
    handler = {
        "aws": aws,
        "kubectl": kubectl,
        "eksctl": eksctl,
        "helm": helm,
        "docker": docker,
        "istioctl": passthrough,
        "psql": psql,
    }[name]
    try:
        return handler(args)
    except Absent as e:
        print(f"An error occurred (NotFound): {e} does not exist", file=sys.stderr)
        return 254


def install(bin_dir: Path, state_dir: Path) -> None:
    """Writes the fake tools into bin_dir (to be put first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("aws", "kubectl", "eksctl", "helm", "docker", "istioctl", "psql"):
        path = bin_dir / name
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from fakecli import main\nsys.exit(main())\n"
        )
        path.chmod(0o755)


if __name__ == "__main__":
    sys.exit(main())
