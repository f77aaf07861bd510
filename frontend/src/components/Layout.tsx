/** Sidebar by role, account switcher, language, user menu with logout, admin and API docs links. */
import { BarChart3, BookOpen, LogOut, MessageSquareText, Settings, Users } from "lucide-react";
import { useTranslation } from "react-i18next";
import { NavLink, Outlet } from "react-router-dom";
import { csrfToken } from "../api/client";
import { LANGUAGE_KEY, useSession } from "../session";

export function Layout() {
  const { t, i18n } = useTranslation();
  function chooseLanguage(language: string) {
    localStorage.setItem(LANGUAGE_KEY, language);
    // Django's language cookie, which GET /crm/me reads: the next browser starts in this language too.
    document.cookie = `django_language=${language}; path=/; max-age=31536000; SameSite=Lax`;
    void i18n.changeLanguage(language);
  }
  const { me, membership, chooseAccount, canSeeMarketing, canManage } = useSession();
  return (
    <div className="shell">
      <a href="#main" className="skip-link">{t("nav.skip")}</a>
      <aside className="sidebar" aria-label={t("nav.label")}>
        <div className="brand">CRM Ventas <span>Marketing</span></div>
        <nav>
          <ul>
            {canSeeMarketing && <li><NavLink to="/marketing"><BarChart3 size={18} aria-hidden="true" /> {t("nav.marketing")}</NavLink></li>}
            {canManage && <li><NavLink to="/hsm"><MessageSquareText size={18} aria-hidden="true" /> {t("nav.hsm")}</NavLink></li>}
            <li><NavLink to="/leads"><Users size={18} aria-hidden="true" /> {t("nav.leads")}</NavLink></li>
          </ul>
        </nav>
        <div className="sidebar-foot">
          {me.user.is_staff && <a href="/admin/"><Settings size={16} aria-hidden="true" /> {t("nav.admin")}</a>}
          <a href="/crm/docs/"><BookOpen size={16} aria-hidden="true" /> {t("nav.docs")}</a>
        </div>
      </aside>
      <div className="main-column">
        <header className="topbar">
          {me.memberships.length > 1 ? (
            <label className="inline">{t("nav.account")}
              <select id="account-switcher" value={membership?.slug ?? ""} onChange={(e) => chooseAccount(e.target.value)}>
                {me.memberships.map((m) => <option key={m.slug} value={m.slug}>{m.name}</option>)}
              </select>
            </label>
          ) : (
            <span className="account-name">{membership?.name ?? t("nav.noAccount")}</span>
          )}
          <div className="topbar-right">
            <label className="inline">{t("nav.language")}
              <select id="language-switcher" value={i18n.language.startsWith("en") ? "en" : "es"}
                onChange={(e) => chooseLanguage(e.target.value)}>
                <option value="es">Español</option>
                <option value="en">English</option>
              </select>
            </label>
            <details className="user-menu">
              <summary>{me.user.name || me.user.username}{membership ? ` · ${t(`role.${membership.role}`)}` : ""}</summary>
              <div className="menu">
                <p className="muted small">{me.user.email}</p>
                <form method="post" action="/accounts/logout/">
                  <input type="hidden" name="csrfmiddlewaretoken" value={csrfToken()} />
                  <button type="submit" className="link" id="logout"><LogOut size={14} aria-hidden="true" /> {t("nav.logout")}</button>
                </form>
              </div>
            </details>
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          {membership ? <Outlet /> : <p className="state">{t("nav.noAccountBody")}</p>}
        </main>
      </div>
    </div>
  );
}
