/** Warns when the Meta token needs a reconnect or expires within 7 days; managers get a Reconnect button. */
import { AlertTriangle } from "lucide-react";
import { useTranslation } from "react-i18next";
import type { MetaTokenStatus } from "../types/marketing";
import { ConnectMetaButton } from "./MetaConnectionWizard";

export const EXPIRY_WARNING_DAYS = 7;

export function tokenNeedsAttention(status: MetaTokenStatus | undefined): boolean {
  if (!status) return false;
  if (status.needs_reconnect) return true;
  return status.connected && status.days_left !== null && status.days_left <= EXPIRY_WARNING_DAYS;
}

export function MetaTokenBanner({ status, canManage }: { status: MetaTokenStatus | undefined; canManage: boolean }) {
  const { t } = useTranslation();
  if (!status || !tokenNeedsAttention(status)) return null;
  const message = status.needs_reconnect
    ? t("token.needsReconnect")
    : t("token.expiresSoon", { count: status.days_left ?? 0 });
  return (
    <div className="banner banner-warning" role="alert" data-testid="metatokenbanner-container">
      <AlertTriangle size={18} aria-hidden="true" />
      <span>{message} {!canManage && t("token.askManager")}</span>
      {canManage && <ConnectMetaButton label={t("connect.reconnect")} />}
    </div>
  );
}
