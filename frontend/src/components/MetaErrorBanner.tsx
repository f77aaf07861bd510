/** ?meta_error=… after the OAuth callback: explained inline, gone after 8 s (and from the URL). */
import { useEffect } from "react";
import { X } from "lucide-react";
import { useTranslation } from "react-i18next";
import { useSearchParams } from "react-router-dom";

export const META_ERROR_DISMISS_MS = 8000;
const KNOWN = ["access_denied", "invalid_state", "token_exchange_failed", "rate_limited"];

export function MetaErrorBanner() {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const code = params.get("meta_error");

  useEffect(() => {
    if (!code) return;
    const timer = window.setTimeout(() => dismiss(), META_ERROR_DISMISS_MS);
    return () => window.clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [code]);

  function dismiss() {
    setParams((current) => {
      const next = new URLSearchParams(current);
      next.delete("meta_error");
      return next;
    }, { replace: true });
  }

  if (!code) return null;
  const reason = KNOWN.includes(code) ? t(`metaError.${code}`) : t("metaError.other");
  return (
    <div className="banner banner-error" role="alert" id="meta-error">
      <span>{reason}</span>
      <button type="button" className="icon-button" onClick={dismiss} aria-label={t("common.dismiss")}><X size={16} /></button>
    </div>
  );
}
