#!/usr/bin/env bash
# A curl session against `make run`: an event opens a case, officers drive it to a fine, a
# supervisor decides it, and we read the history and the year's statistics.
set -euo pipefail
keys="$(cd "$(dirname "$0")/.." && pwd)/.data/dev-keys.json"
SYSTEM=$(python3 -c "import json;print(json.load(open('$keys'))['enforcement-system'])")
OFFICER=$(python3 -c "import json;print(json.load(open('$keys'))['officer'])")
SUPERVISOR=$(python3 -c "import json;print(json.load(open('$keys'))['supervisor'])")
API=http://localhost:8000
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d.get(k) for k in sys.argv[1:]}, ensure_ascii=False))" "$@"; }
post() { local key=$1 path=$2 body=$3; shift 3
  echo "\$ curl -X POST $API$path -H 'Authorization: Bearer <$KEYNAME>' -d '$body'" >&2
  curl -sS -X POST "$API$path" -H "Authorization: Bearer $key" -H content-type:application/json -d "$body" | j "$@"; }

KEYNAME=enforcement-system post "$SYSTEM" /events '{"idempotency_key":"monitoring-20261128-0001","type":"violation_detected","source":"monitoring","occurred_at":"2026-11-28T09:30:00+08:00","payload":{"url":"https://news.example.cn/item/1"},"subject":{"kind":"website","name":"Example News","identifiers":{"domain":"news.example.cn"}},"violation_category":"prohibited_information","legal_basis":"Cybersecurity Law art. 61","office":"beijing"}' result case_id stage detection | tee /tmp/opened.json
CASE=$(python3 -c "import json;print(json.load(open('/tmp/opened.json'))['case_id'])")
KEYNAME=enforcement-system post "$SYSTEM" /events '{"idempotency_key":"monitoring-20261128-0001","type":"violation_detected","source":"monitoring","occurred_at":"2026-11-28T09:30:00+08:00","payload":{"url":"https://news.example.cn/item/1"},"subject":{"kind":"website","name":"Example News","identifiers":{"domain":"news.example.cn"}},"violation_category":"prohibited_information","legal_basis":"Cybersecurity Law art. 61","office":"beijing"}' result case_id detection   # the same event again: duplicate
KEYNAME=enforcement-system post "$SYSTEM" /events '{"idempotency_key":"monitoring-20261128-0001","type":"violation_detected","source":"monitoring","occurred_at":"2026-11-28T09:30:00+08:00","payload":{"url":"https://news.example.cn/item/2"},"subject":{"kind":"website","name":"Example News","identifiers":{"domain":"news.example.cn"}},"violation_category":"prohibited_information","legal_basis":"Cybersecurity Law art. 61","office":"beijing"}' status type detail   # the key, another body: 409
KEYNAME=enforcement-system post "$SYSTEM" /events '{"idempotency_key":"monitoring-20261128-0002","type":"violation_detected","source":"monitoring","occurred_at":"2026-11-28T09:30:00+08:00","payload":{"url":"https://news.example.cn/item/2"},"subject":{"kind":"website","name":"Example News","identifiers":{"domain":"news.example.cn"}},"violation_category":"prohibited_information","legal_basis":"Cybersecurity Law art. 61","office":"beijing"}' result case_id detection   # joins: one INSERT, no workflow call
KEYNAME=officer post "$OFFICER" /cases/$CASE/filing-decision '{"actor":"officer.li","decision":"filed","reasons":"Monitoring evidence of prohibited information."}' stage
KEYNAME=officer post "$OFFICER" /cases/$CASE/penalty-procedure '{"actor":"officer.li","reasons":"Repeated prohibited information after earlier warnings."}' stage
KEYNAME=officer post "$OFFICER" /cases/$CASE/investigation-report '{"actor":"officer.li","facts":"37 items of prohibited information between 1 and 20 Nov.","evidence":["snapshot-123","log-export-7"],"proposed_measure":"fine"}' stage
KEYNAME=officer post "$OFFICER" /cases/$CASE/penalty-notice '{"actor":"officer.li","measure":"fine","fine_yuan":"30000","facts":"37 items of prohibited information.","reasons":"Content review duties neglected.","legal_basis":"Cybersecurity Law art. 61"}' stage
KEYNAME=officer post "$OFFICER" /cases/$CASE/penalty-decision '{"actor":"officer.li","measure":"fine","fine_yuan":"30000","reasons":"r","legal_basis":"Cybersecurity Law art. 61"}' status detail
KEYNAME=officer post "$OFFICER" /cases/$CASE/statements '{"actor":"party:example-news","statement":"We accept the facts and waive statement, defence and hearing.","waive_rights":true}' stage
KEYNAME=supervisor post "$SUPERVISOR" /cases/$CASE/penalty-decision '{"actor":"director.wang","measure":"fine","fine_yuan":"40000","reasons":"r","legal_basis":"Cybersecurity Law art. 61"}' status detail
KEYNAME=supervisor post "$SUPERVISOR" /cases/$CASE/penalty-decision '{"actor":"director.wang","measure":"fine","fine_yuan":"30000","reasons":"Facts proven; no mitigation offered.","legal_basis":"Cybersecurity Law art. 61"}' stage
NOW=$(python3 -c "import datetime;print(datetime.datetime.now(datetime.timezone.utc).isoformat())")
KEYNAME=officer post "$OFFICER" /cases/$CASE/service "{\"actor\":\"officer.li\",\"served_at\":\"$NOW\",\"method\":\"direct\"}" stage
KEYNAME=officer post "$OFFICER" /cases/$CASE/payments "{\"actor\":\"officer.li\",\"amount_yuan\":\"30000\",\"paid_at\":\"$NOW\"}" stage outcome

echo "\$ curl $API/cases/$CASE/history -H 'Authorization: Bearer <officer>'   (audit entries)" >&2
curl -sS "$API/cases/$CASE/history" -H "Authorization: Bearer $OFFICER" | python3 -c "
import json,sys; d=json.load(sys.stdin)
print('temporal_ui_url:', d['temporal_ui_url']); print('entries:', len(d['timeline']))
for e in d['timeline']:
    if e['source'] in ('audit','documents'): print(' ', e['at'][:19], e['source'][:5], e['step'], '—', e['who'])"
echo "\$ curl '$API/stats?year=2026&office=beijing' -H 'Authorization: Bearer <supervisor>'" >&2
curl -sS "$API/stats?year=2026&office=beijing" -H "Authorization: Bearer $SUPERVISOR"; echo
