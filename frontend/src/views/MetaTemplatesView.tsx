/** /hub/hsm: engine health, templates with a bubble preview, rules with an on/off toggle, and the send log. */
import { useMemo, useState } from "react";
import { ExternalLink } from "lucide-react";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { Empty, ErrorMessage, Loading } from "../components/States";
import { TemplatePreview } from "../components/TemplatePreview";
import { formatDateTime, formatNumber, formatPercentage } from "../lib/format";
import { useFormat, useSession } from "../session";
import type { AutomationLog, AutomationRule, HSMTemplate, SendStatus, TriggerType } from "../types/marketing";

const LOG_PAGE = 20;
const STATUSES: SendStatus[] = ["queued", "sending", "unknown", "sent", "delivered", "read", "failed", "skipped"];
const TRIGGERS: TriggerType[] = ["lead_created", "lead_status_changed", "opportunity_created", "opportunity_stage_changed", "opportunity_won", "no_reply"];

export function MetaTemplatesView() {
  const { t } = useTranslation();
  const { canManage } = useSession();
  if (!canManage) {
    return <div data-testid="metatemplatesview-container"><Empty title={t("access.deniedTitle")}>{t("access.deniedHsm")}</Empty></div>;
  }
  return (
    <div className="page" data-testid="metatemplatesview-container">
      <header className="page-header"><div><h1>{t("hsm.title")}</h1><p className="muted">{t("hsm.subtitle")}</p></div></header>
      <EngineCard />
      <RulesSection />
      <TemplatesSection />
      <SendLog />
    </div>
  );
}

function EngineCard() {
  const { t } = useTranslation();
  const { language } = useFormat();
  const stats = useQuery({ queryKey: ["automation-stats"], queryFn: () => marketingApi.getAutomationStats() });
  return (
    <section className="card" aria-labelledby="engine-title" id="engine-card">
      <h2 id="engine-title">{t("hsm.engine")}</h2>
      {stats.isPending && <Loading />}
      {stats.isError && <ErrorMessage error={stats.error} onRetry={() => stats.refetch()} />}
      {stats.data && (
        <dl className="figures">
          <div><dt>{t("hsm.engineState")}</dt><dd><span className={`badge engine-${stats.data.engine}`}>{t(`engine.${stats.data.engine}`)}</span></dd></div>
          <div><dt>{t("hsm.sends")}</dt><dd>{formatNumber(stats.data.sends, language)}</dd></div>
          <div><dt>{t("hsm.deliveryRate")}</dt><dd>{formatPercentage(stats.data.delivery_rate, language)}</dd></div>
          <div><dt>{t("hsm.readRate")}</dt><dd>{formatPercentage(stats.data.read_rate, language)}</dd></div>
          <div><dt>{t("hsm.failed")}</dt><dd>{formatNumber(stats.data.failed, language)}</dd></div>
          <div><dt>{t("hsm.followedUp")}</dt><dd>{formatPercentage(stats.data.leads_followed_up, language)}</dd></div>
          <div><dt>{t("hsm.uncontacted")}</dt><dd className={stats.data.leads_uncontacted_24h > 0 ? "bad" : ""}>{formatNumber(stats.data.leads_uncontacted_24h, language)}</dd></div>
        </dl>
      )}
    </section>
  );
}

function RulesSection() {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const rules = useQuery({ queryKey: ["automation-rules"], queryFn: marketingApi.getAutomationRules });
  const templates = useQuery({ queryKey: ["hsm-templates"], queryFn: () => marketingApi.getHSMTemplates() });
  const toggle = useMutation({
    mutationFn: ({ id, active }: { id: number; active: boolean }) => marketingApi.setRuleActive(id, active),
    onSuccess: (rule) => queryClient.setQueryData<AutomationRule[]>(["automation-rules"], (old) =>
      old?.map((r) => (r.id === rule.id ? { ...r, ...rule } : r))),
  });
  const templateName = useMemo(() => {
    const byId = new Map((templates.data ?? []).map((tpl) => [String(tpl.id), tpl.name]));
    return (step: AutomationRule["steps"][number]) => step.template_name ?? byId.get(String(step.template)) ?? String(step.template);
  }, [templates.data]);
  return (
    <section className="card" aria-labelledby="rules-title">
      <h2 id="rules-title">{t("hsm.rules")}</h2>
      {rules.isPending && <Loading />}
      {rules.isError && <ErrorMessage error={rules.error} onRetry={() => rules.refetch()} />}
      {rules.data && rules.data.length === 0 && (
        <Empty title={t("hsm.noRules")}><a href="/admin/automation/automationrule/add/">{t("hsm.addRule")}</a></Empty>
      )}
      {toggle.isError && <ErrorMessage error={toggle.error} />}
      {rules.data && rules.data.length > 0 && (
        <ul className="rule-list">
          {rules.data.map((rule) => (
            <li key={rule.id} className="rule" data-rule={rule.id}>
              <div className="rule-main">
                <h3>{rule.name}</h3>
                <p className="muted">{triggerText(rule, t)} · {t("hsm.stepsCount", { count: rule.steps.length })}</p>
                <ol className="steps">
                  {[...rule.steps].sort((a, b) => a.order - b.order).map((step) => (
                    <li key={step.order}>{t("hsm.stepLine", { delay: delayText(step.delay_minutes, t), template: templateName(step) })}</li>
                  ))}
                </ol>
                {rule.flagged_reason && <p className="bad small">{rule.flagged_reason}</p>}
                <p className="muted small">
                  {t("hsm.counters", { sent: rule.sent_count ?? 0, delivered: rule.delivered_count ?? 0, read: rule.read_count ?? 0, failed: rule.failed_count ?? 0 })}
                </p>
              </div>
              <div className="rule-actions">
                <label className="switch">
                  <input type="checkbox" role="switch" checked={rule.is_active} disabled={toggle.isPending}
                    onChange={(e) => toggle.mutate({ id: rule.id, active: e.target.checked })}
                    aria-label={t("hsm.toggleRule", { name: rule.name })} />
                  <span>{rule.is_active ? t("hsm.active") : t("hsm.inactive")}</span>
                </label>
                <a className="link" href={`/admin/automation/automationrule/${rule.id}/change/`}>{t("hsm.edit")} <ExternalLink size={12} aria-hidden="true" /></a>
              </div>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** The trigger in words; a no-reply rule says after how many hours without an answer it fires. */
function triggerText(rule: AutomationRule, t: (key: string, options?: Record<string, unknown>) => string): string {
  if (rule.trigger_type === "no_reply" && rule.no_reply_hours) return t("hsm.noReplyAfter", { count: rule.no_reply_hours });
  return t(`trigger.${rule.trigger_type}`);
}

function delayText(minutes: number, t: (key: string, options?: Record<string, unknown>) => string): string {
  if (minutes === 0) return t("hsm.immediately");
  if (minutes % 1440 === 0) return t("hsm.afterDays", { count: minutes / 1440 });
  if (minutes % 60 === 0) return t("hsm.afterHours", { count: minutes / 60 });
  return t("hsm.afterMinutes", { count: minutes });
}

function TemplatesSection() {
  const { t } = useTranslation();
  const templates = useQuery({ queryKey: ["hsm-templates"], queryFn: () => marketingApi.getHSMTemplates() });
  const rules = useQuery({ queryKey: ["automation-rules"], queryFn: marketingApi.getAutomationRules });
  /** The fields a rule maps to each template's variables (the first rule step using it). */
  const mappings = useMemo(() => {
    const map = new Map<string, Record<string, string>>();
    for (const rule of rules.data ?? []) for (const step of rule.steps) {
      const key = String(step.template);
      if (!map.has(key)) map.set(key, step.variables);
    }
    return map;
  }, [rules.data]);
  return (
    <section className="card" aria-labelledby="templates-title">
      <h2 id="templates-title">{t("hsm.templates")}</h2>
      {templates.isPending && <Loading />}
      {templates.isError && <ErrorMessage error={templates.error} onRetry={() => templates.refetch()} />}
      {templates.data && templates.data.length === 0 && <Empty title={t("hsm.noTemplates")}>{t("hsm.noTemplatesBody")}</Empty>}
      {templates.data && templates.data.length > 0 && (
        <div className="template-grid">
          {templates.data.map((template: HSMTemplate) => (
            <article key={template.id} className="template-card">
              <header>
                <h3>{template.name}</h3>
                <span className={`badge tpl-${template.status.toLowerCase()}`}>{t(`templateStatus.${template.status}`, { defaultValue: template.status })}</span>
              </header>
              <p className="muted small">{template.category} · {template.language}</p>
              <TemplatePreview template={template} variables={mappings.get(String(template.id)) ?? mappings.get(template.name)} />
              <p className="muted small">{t("hsm.templateCounters", { sent: template.sent_count, delivered: template.delivered_count, read: template.read_count })}</p>
            </article>
          ))}
        </div>
      )}
    </section>
  );
}

export function SendLog({ lead }: { lead?: number }) {
  const { t } = useTranslation();
  const { language, timeZone } = useFormat();
  const [status, setStatus] = useState("");
  const [trigger, setTrigger] = useState("");
  const [rule, setRule] = useState("");
  const rules = useQuery({ queryKey: ["automation-rules"], queryFn: marketingApi.getAutomationRules, enabled: lead === undefined });
  const logs = useInfiniteQuery({
    queryKey: ["automation-logs", status, trigger, rule, lead ?? null],
    queryFn: ({ pageParam }) => marketingApi.getAutomationLogs({ status, trigger_type: trigger, rule, lead, limit: LOG_PAGE, offset: pageParam }),
    initialPageParam: 0,
    getNextPageParam: (last) => (last.offset + last.results.length < last.total ? last.offset + last.results.length : undefined),
  });
  const rows: AutomationLog[] = logs.data?.pages.flatMap((p) => p.results) ?? [];
  return (
    <section className="card" aria-labelledby="log-title" id="send-log">
      <h2 id="log-title">{lead === undefined ? t("log.title") : t("log.leadTitle")}</h2>
      {lead === undefined && (
        <div className="filters">
          <label>{t("log.status")}
            <select value={status} onChange={(e) => setStatus(e.target.value)}>
              <option value="">{t("log.all")}</option>
              {STATUSES.map((s) => <option key={s} value={s}>{t(`sendStatus.${s}`)}</option>)}
            </select>
          </label>
          <label>{t("log.trigger")}
            <select value={trigger} onChange={(e) => setTrigger(e.target.value)}>
              <option value="">{t("log.all")}</option>
              {TRIGGERS.map((s) => <option key={s} value={s}>{t(`trigger.${s}`)}</option>)}
            </select>
          </label>
          <label>{t("log.rule")}
            <select value={rule} onChange={(e) => setRule(e.target.value)}>
              <option value="">{t("log.all")}</option>
              {(rules.data ?? []).map((r) => <option key={r.id} value={r.id}>{r.name}</option>)}
            </select>
          </label>
        </div>
      )}
      {logs.isPending && <Loading />}
      {logs.isError && <ErrorMessage error={logs.error} onRetry={() => logs.refetch()} />}
      {logs.data && rows.length === 0 && <Empty title={t("log.empty")}>{lead === undefined ? t("log.emptyBody") : null}</Empty>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table className="data-table">
            <thead>
              <tr>
                <th scope="col">{t("log.when")}</th>
                {lead === undefined && <th scope="col">{t("log.lead")}</th>}
                <th scope="col">{t("log.rule")}</th>
                <th scope="col">{t("log.template")}</th>
                <th scope="col">{t("log.status")}</th>
                <th scope="col">{t("log.details")}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.id}>
                  <td>{formatDateTime(row.created_at, language, timeZone)}</td>
                  {lead === undefined && <td><Link to={`/leads/${row.lead_id}`}>{row.lead_name}</Link></td>}
                  <td>{row.rule_name}<br /><span className="muted small">{t(`trigger.${row.trigger_type}`, { defaultValue: row.trigger_type })}</span></td>
                  <td>{row.template_name}</td>
                  <td><span className={`badge send-${row.status}`}>{t(`sendStatus.${row.status}`, { defaultValue: row.status })}</span></td>
                  <td>
                    {(row.error_code !== null || row.error_details) ? (
                      <details>
                        <summary>{t("log.errorSummary", { code: row.error_code ?? "—" })}</summary>
                        <p className="small">{row.error_details || "—"}</p>
                      </details>
                    ) : (
                      <span className="muted small">
                        {row.read_at ? t("log.readAt", { when: formatDateTime(row.read_at, language, timeZone) })
                          : row.delivered_at ? t("log.deliveredAt", { when: formatDateTime(row.delivered_at, language, timeZone) })
                          : row.sent_at ? t("log.sentAt", { when: formatDateTime(row.sent_at, language, timeZone) }) : "—"}
                      </span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {logs.hasNextPage && (
        <button type="button" className="button secondary" onClick={() => logs.fetchNextPage()} disabled={logs.isFetchingNextPage}>
          {logs.isFetchingNextPage ? t("state.loading") : t("log.loadMore")}
        </button>
      )}
    </section>
  );
}
