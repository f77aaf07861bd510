/** Connect Meta: dialog -> business portfolio -> ad account -> WhatsApp number -> Pages -> done. */
import { useState } from "react";
import { Check } from "lucide-react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";
import { marketingApi } from "../api/marketing";
import type { MetaAdAccount } from "../types/marketing";
import { ErrorMessage, Loading } from "./States";
import { announceSyncStarted } from "./SyncControls";

export type WizardStep = "connect" | "portfolio" | "adaccount" | "whatsapp" | "pages" | "done";
const STEPS: WizardStep[] = ["connect", "portfolio", "adaccount", "whatsapp", "pages", "done"];
const ALL_ACCOUNTS = "";

/** Asks the server for the Meta dialog URL and goes there (the callback brings the user back). */
export function ConnectMetaButton({ label, className = "button" }: { label?: string; className?: string }) {
  const { t } = useTranslation();
  const start = useMutation({
    mutationFn: marketingApi.getMetaAuthUrl,
    onSuccess: (data) => window.location.assign(data.auth_url),
  });
  return (
    <>
      <button type="button" className={className} id="connect-meta" onClick={() => start.mutate()} disabled={start.isPending}>
        {start.isPending ? t("connect.opening") : label ?? t("connect.connect")}
      </button>
      {start.isError && <ErrorMessage error={start.error} />}
    </>
  );
}

function isNotBuiltYet(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 405);
}

export function isSelectable(account: MetaAdAccount): boolean {
  return account.status === "ACTIVE";
}

export function MetaConnectionWizard({ initialStep = "connect", onDone }: { initialStep?: WizardStep; onDone?: () => void }) {
  const { t } = useTranslation();
  const [step, setStep] = useState<WizardStep>(initialStep);
  const [portfolio, setPortfolio] = useState<string>(ALL_ACCOUNTS);
  const index = STEPS.indexOf(step);
  return (
    <section className="card wizard" data-testid="metaconnectionwizard-container" aria-labelledby="wizard-title">
      <h2 id="wizard-title">{t("wizard.title")}</h2>
      <ol className="wizard-steps">
        {STEPS.map((name, i) => (
          <li key={name} className={i < index ? "done" : i === index ? "current" : ""} aria-current={i === index ? "step" : undefined}>
            {i < index && <Check size={14} aria-hidden="true" />} {t(`wizard.step.${name}`)}
          </li>
        ))}
      </ol>
      {step === "connect" && (
        <div className="wizard-body">
          <p>{t("wizard.connectIntro")}</p>
          <ConnectMetaButton />
        </div>
      )}
      {step === "portfolio" && (
        <PortfolioStep value={portfolio} onChange={setPortfolio} onNext={() => setStep("adaccount")} />
      )}
      {step === "adaccount" && (
        <AdAccountStep portfolio={portfolio} onBack={() => setStep("portfolio")} onNext={() => setStep("whatsapp")} />
      )}
      {step === "whatsapp" && <WhatsAppStep onNext={() => setStep("pages")} />}
      {step === "pages" && <PagesStep onNext={() => setStep("done")} />}
      {step === "done" && (
        <div className="wizard-body">
          <p className="success"><Check size={16} aria-hidden="true" /> {t("wizard.done")}</p>
          <button type="button" className="button" onClick={onDone}>{t("wizard.close")}</button>
        </div>
      )}
    </section>
  );
}

function PortfolioStep({ value, onChange, onNext }: { value: string; onChange: (id: string) => void; onNext: () => void }) {
  const { t } = useTranslation();
  const portfolios = useQuery({ queryKey: ["meta-portfolios"], queryFn: marketingApi.getMetaPortfolios });
  if (portfolios.isPending) return <Loading label={t("wizard.loadingPortfolios")} />;
  if (portfolios.isError) return <ErrorMessage error={portfolios.error} onRetry={() => portfolios.refetch()} />;
  return (
    <fieldset className="wizard-body choice-list">
      <legend>{t("wizard.pickPortfolio")}</legend>
      {portfolios.data.map((p) => (
        <label key={p.id} className="choice">
          <input type="radio" name="portfolio" value={p.id} checked={value === p.id} onChange={() => onChange(p.id)} />
          <span className="choice-name">{p.name}</span>
          <span className="muted">{t("wizard.adAccountsCount", { count: p.ad_accounts_count })}</span>
        </label>
      ))}
      <label className="choice">
        <input type="radio" name="portfolio" value="" checked={value === ALL_ACCOUNTS} onChange={() => onChange(ALL_ACCOUNTS)} />
        <span className="choice-name">{t("wizard.allAdAccounts")}</span>
      </label>
      <div className="wizard-actions"><button type="button" className="button" onClick={onNext}>{t("wizard.next")}</button></div>
    </fieldset>
  );
}

function AdAccountStep({ portfolio, onBack, onNext }: { portfolio: string; onBack: () => void; onNext: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [chosen, setChosen] = useState<MetaAdAccount | null>(null);
  const accounts = useQuery({ queryKey: ["meta-accounts", portfolio], queryFn: () => marketingApi.getMetaAccounts(portfolio || undefined) });
  const connect = useMutation({
    mutationFn: (account: MetaAdAccount) => marketingApi.connectMetaAccount(account.id, account.name),
    onSuccess: () => {
      announceSyncStarted();
      void queryClient.invalidateQueries();
      onNext();
    },
  });
  if (accounts.isPending) return <Loading label={t("wizard.loadingAdAccounts")} />;
  if (accounts.isError) return <ErrorMessage error={accounts.error} onRetry={() => accounts.refetch()} />;
  return (
    <fieldset className="wizard-body choice-list">
      <legend>{t("wizard.pickAdAccount")}</legend>
      {accounts.data.length === 0 && <p>{t("wizard.noAdAccounts")}</p>}
      {accounts.data.map((account) => {
        const selectable = isSelectable(account);
        return (
          <label key={account.id} className={`choice${selectable ? "" : " disabled"}`}>
            <input type="radio" name="ad-account" value={account.id} disabled={!selectable}
              checked={chosen?.id === account.id} onChange={() => setChosen(account)} />
            <span className="choice-name">{account.name}</span>
            <span className="muted">{account.id} · {account.currency} · {account.timezone}</span>
            {!selectable && <span className="badge badge-muted">{t(`adAccountStatus.${account.status}`, { defaultValue: account.status })}</span>}
          </label>
        );
      })}
      {connect.isError && <ErrorMessage error={connect.error} />}
      <div className="wizard-actions">
        <button type="button" className="button secondary" onClick={onBack}>{t("wizard.back")}</button>
        <button type="button" className="button" id="connect-ad-account" disabled={!chosen || connect.isPending}
          onClick={() => chosen && connect.mutate(chosen)}>
          {connect.isPending ? t("wizard.connecting") : t("wizard.useAdAccount")}
        </button>
      </div>
    </fieldset>
  );
}

function WhatsAppStep({ onNext }: { onNext: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const channels = useQuery({ queryKey: ["whatsapp-channels"], queryFn: marketingApi.getWhatsAppChannels, retry: false });
  const select = useMutation({
    mutationFn: marketingApi.selectWhatsAppChannel,
    onSuccess: (data) => queryClient.setQueryData(["whatsapp-channels"], data),
  });
  if (channels.isPending) return <Loading />;
  if (channels.isError && isNotBuiltYet(channels.error)) return <Unavailable onNext={onNext} />;
  if (channels.isError) return <><ErrorMessage error={channels.error} /><SkipButton onNext={onNext} /></>;
  return (
    <fieldset className="wizard-body choice-list">
      <legend>{t("wizard.pickWhatsApp")}</legend>
      {channels.data.length === 0 && <p>{t("wizard.noWhatsApp")}</p>}
      {channels.data.map((channel) => (
        <label key={channel.phone_number_id} className="choice">
          <input type="radio" name="whatsapp" checked={channel.is_selected} disabled={select.isPending}
            onChange={() => select.mutate(channel.phone_number_id)} />
          <span className="choice-name">{channel.display_phone_number} · {channel.verified_name}</span>
          <span className="muted">{t("wizard.quality", { rating: channel.quality_rating || "—" })}</span>
        </label>
      ))}
      {select.isError && <ErrorMessage error={select.error} />}
      <SkipButton onNext={onNext} label={t("wizard.next")} />
    </fieldset>
  );
}

function PagesStep({ onNext }: { onNext: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const pages = useQuery({ queryKey: ["meta-pages"], queryFn: marketingApi.getMetaPages, retry: false });
  const subscribe = useMutation({
    mutationFn: marketingApi.subscribeMetaPage,
    onSuccess: (data) => queryClient.setQueryData(["meta-pages"], data),
  });
  if (pages.isPending) return <Loading />;
  if (pages.isError && isNotBuiltYet(pages.error)) return <Unavailable onNext={onNext} />;
  if (pages.isError) return <><ErrorMessage error={pages.error} /><SkipButton onNext={onNext} /></>;
  return (
    <div className="wizard-body choice-list">
      <p className="legend">{t("wizard.pickPages")}</p>
      {pages.data.length === 0 && <p>{t("wizard.noPages")}</p>}
      {pages.data.map((page) => (
        <div key={page.page_id} className="choice">
          <span className="choice-name">{page.name}</span>
          {page.is_subscribed
            ? <span className="badge badge-good"><Check size={12} aria-hidden="true" /> {t("wizard.subscribed")}</span>
            : <button type="button" className="button secondary small" disabled={subscribe.isPending}
                onClick={() => subscribe.mutate(page.page_id)}>{t("wizard.subscribe")}</button>}
        </div>
      ))}
      {subscribe.isError && <ErrorMessage error={subscribe.error} />}
      <SkipButton onNext={onNext} label={t("wizard.finish")} />
    </div>
  );
}

function Unavailable({ onNext }: { onNext: () => void }) {
  const { t } = useTranslation();
  return (
    <div className="wizard-body">
      <p className="muted">{t("wizard.unavailable")}</p>
      <SkipButton onNext={onNext} />
    </div>
  );
}

function SkipButton({ onNext, label }: { onNext: () => void; label?: string }) {
  const { t } = useTranslation();
  return <div className="wizard-actions"><button type="button" className="button" onClick={onNext}>{label ?? t("wizard.skip")}</button></div>;
}

/** Connected: which ad account, change it, disconnect (with confirmation). Managers only. */
export function MetaConnectionBar({ adAccountName, onChange }: { adAccountName: string | null; onChange: () => void }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const disconnect = useMutation({
    mutationFn: marketingApi.disconnectMeta,
    onSuccess: () => {
      setConfirming(false);
      void queryClient.invalidateQueries();
    },
  });
  return (
    <div className="connection-bar" id="meta-state">
      <span><Check size={14} aria-hidden="true" /> {t("connect.connected")}{adAccountName ? ` · ${adAccountName}` : ""}</span>
      <button type="button" className="link" onClick={onChange}>{t("connect.changeAdAccount")}</button>
      {!confirming && <button type="button" className="link danger" id="disconnect-meta" onClick={() => setConfirming(true)}>{t("connect.disconnect")}</button>}
      {confirming && (
        <span className="confirm" role="alertdialog" aria-label={t("connect.confirmDisconnect")}>
          {t("connect.confirmDisconnect")}{" "}
          <button type="button" className="button danger small" id="confirm-disconnect" onClick={() => disconnect.mutate()}
            disabled={disconnect.isPending}>{t("connect.disconnectYes")}</button>{" "}
          <button type="button" className="button secondary small" onClick={() => setConfirming(false)}>{t("common.cancel")}</button>
        </span>
      )}
      {disconnect.isError && <ErrorMessage error={disconnect.error} />}
    </div>
  );
}
