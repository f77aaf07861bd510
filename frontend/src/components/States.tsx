/** The loading, error and empty states every view shows. */
import type { ReactNode } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";

export function Loading({ label }: { label?: string }) {
  const { t } = useTranslation();
  return <p className="state state-loading" role="status">{label ?? t("state.loading")}</p>;
}

export function errorText(error: unknown, t: (key: string, options?: Record<string, unknown>) => string): string {
  if (error instanceof ApiError) {
    const known = t(`apiError.${error.code}`, { defaultValue: "" });
    const fields = Object.entries(error.fields).map(([field, messages]) => `${field}: ${messages.join(" ")}`);
    return [known || error.message, ...fields].join(" ");
  }
  return error instanceof Error ? error.message : String(error);
}

export function ErrorMessage({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const { t } = useTranslation();
  return (
    <div className="state state-error" role="alert">
      <strong>{t("state.error")}</strong> <span>{errorText(error, t)}</span>
      {onRetry && <button type="button" className="link" onClick={onRetry}>{t("state.retry")}</button>}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state state-empty">
      <p className="state-title">{title}</p>
      {children && <div className="state-body">{children}</div>}
    </div>
  );
}
