/** /hub/marketing: range, KPI cards, spend vs revenue, campaigns, sync, and the Meta connection. */
import { lazy, Suspense, useEffect, useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { useLocation, useSearchParams } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { CampaignTable, firstCampaignPage } from "../components/CampaignTable";
import { KpiGrid } from "../components/KpiGrid";
import { MetaConnectionBar, MetaConnectionWizard, type WizardStep } from "../components/MetaConnectionWizard";
import { MetaErrorBanner } from "../components/MetaErrorBanner";
import { MetaTokenBanner } from "../components/MetaTokenBanner";
import { RangeSelector } from "../components/RangeSelector";
import { Empty, ErrorMessage, Loading } from "../components/States";
import { SYNC_POLL_MS, SyncBanner, SyncControls, useSyncProgress } from "../components/SyncControls";
import { rangeKey, useTimeRange } from "../lib/range";
import { useSession } from "../session";
import type { MetaTokenStatus } from "../types/marketing";

const SpendRevenueChart = lazy(() => import("../components/SpendRevenueChart"));

export function NoAccess() {
  const { t } = useTranslation();
  return <Empty title={t("access.deniedTitle")}>{t("access.deniedBody")}</Empty>;
}

export function MarketingHubView() {
  const { t } = useTranslation();
  const { canSeeMarketing, canManage, membership } = useSession();
  const [range, setRange] = useTimeRange();
  const [params, setParams] = useSearchParams();
  const { search } = useLocation();
  const justConnected = params.get("meta") === "connected";
  const [wizardStep, setWizardStep] = useState<WizardStep | null>(justConnected ? "portfolio" : null);

  const queryClient = useQueryClient();
  useEffect(() => {
    if (canSeeMarketing) void queryClient.prefetchQuery(firstCampaignPage(range));
  }, [canSeeMarketing, queryClient, range]);
  const stats = useQuery({ queryKey: ["stats", rangeKey(range)], queryFn: () => marketingApi.getStats(range), enabled: canSeeMarketing });
  // token-status asks Meta for live counts: it waits for the figures instead of competing with them.
  const tokenStatus = useQuery({ queryKey: ["token-status"], queryFn: marketingApi.getTokenStatus, enabled: canSeeMarketing && !stats.isPending });
  const progress = useSyncProgress(stats.data?.last_synced_at);
  const polling = progress.syncing ? SYNC_POLL_MS : false;
  const timeseries = useQuery({
    queryKey: ["timeseries", rangeKey(range)], queryFn: () => marketingApi.getTimeseries(range),
    enabled: canSeeMarketing && !!stats.data?.meta_connected, refetchInterval: polling,
  });
  // While a sync runs, every figure on the page is refreshed until the run shows up as finished.
  useQuery({ queryKey: ["stats", rangeKey(range)], queryFn: () => marketingApi.getStats(range), enabled: progress.syncing, refetchInterval: polling });

  // While another period's figures load, token-status (not per period) still knows: the wizard keeps its step.
  const connected = stats.data?.meta_connected ?? tokenStatus.data?.connected ?? false;
  const needsAdAccount = connected && tokenStatus.data !== undefined && tokenStatus.data.ad_account === null;
  // Opened because no ad account is chosen yet, the wizard stays open after the pick, for its WhatsApp and Pages steps.
  useEffect(() => {
    if (canManage && needsAdAccount) setWizardStep((step) => step ?? "portfolio");
  }, [canManage, needsAdAccount]);

  if (!canSeeMarketing) return <div data-testid="marketinghubview-container"><NoAccess /></div>;

  function closeWizard() {
    setWizardStep(null);
    if (justConnected) {
      setParams((current) => { const next = new URLSearchParams(current); next.delete("meta"); return next; }, { replace: true });
    }
  }

  const status: MetaTokenStatus | undefined = tokenStatus.data;
  const showWizard = canManage && (wizardStep !== null || needsAdAccount);

  return (
    <div className="page" data-testid="marketinghubview-container">
      <header className="page-header">
        <div>
          <h1>{t("hub.title")}</h1>
          <p className="muted">{membership?.name}{status?.ad_account ? ` · ${status.ad_account.name}` : ""}</p>
        </div>
        <div className="page-actions">
          <RangeSelector key={rangeKey(range)} range={range} onChange={setRange} />
          {connected && stats.data && (
            <SyncControls lastSyncedAt={stats.data.last_synced_at} syncing={progress.syncing} onStarted={progress.start} />
          )}
        </div>
      </header>

      <MetaErrorBanner />
      {justConnected && <div className="banner banner-success" role="status" id="meta-message">{t("connect.justConnected")}</div>}
      <MetaTokenBanner status={status} canManage={canManage} />
      {progress.syncing && <SyncBanner />}
      {stats.data?.currency_mismatch && (
        <div className="banner banner-warning" role="note" id="currency-note">
          {t("hub.currencyMismatch", { currencies: stats.data.unconverted_currencies.join(", "), currency: stats.data.currency })}
        </div>
      )}
      {canManage && connected && status && !showWizard && (
        <MetaConnectionBar adAccountName={status.ad_account?.name ?? null} onChange={() => setWizardStep("portfolio")} />
      )}
      {showWizard && <MetaConnectionWizard key={connected ? "connected" : "not-connected"} initialStep={connected ? (wizardStep ?? "portfolio") : "connect"} onDone={closeWizard} />}

      {stats.isPending && <Loading label={t("hub.loadingStats")} />}
      {stats.isError && <ErrorMessage error={stats.error} onRetry={() => stats.refetch()} />}
      {stats.data && !stats.data.meta_connected && !showWizard && (
        <section className="card connect-cta" id="connect-cta">
          <h2>{t("hub.notConnectedTitle")}</h2>
          <p>{canManage ? t("hub.notConnectedManager") : t("hub.notConnectedOther")}</p>
          {canManage && <MetaConnectionWizard initialStep="connect" />}
        </section>
      )}
      {stats.data && stats.data.meta_connected && (
        <>
          <KpiGrid stats={stats.data} />
          <section className="card">
            <h2>{t("chart.title")}</h2>
            {timeseries.isPending && <Loading />}
            {timeseries.isError && <ErrorMessage error={timeseries.error} />}
            {timeseries.data && timeseries.data.length === 0 && <Empty title={t("chart.empty")}>{t("chart.emptyBody")}</Empty>}
            {timeseries.data && timeseries.data.length > 0 && (
              <Suspense fallback={<Loading />}>
                <SpendRevenueChart points={timeseries.data} currency={stats.data.currency} />
              </Suspense>
            )}
          </section>
          <section className="card">
            <h2>{t("campaigns.title")}</h2>
            <CampaignTable key={rangeKey(range)} range={range} search={search} live={progress.syncing} />
          </section>
        </>
      )}
    </div>
  );
}
