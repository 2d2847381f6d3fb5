"""The CRM dictionaries of the emulated portal: deal stages and pipelines, lead statuses,
sources, deal/contact/company types, industries (crm.status rows) and currencies."""

from __future__ import annotations

DEAL_STAGES = (
    ("NEW", "New"), ("PREPARATION", "Preparation"), ("PREPAYMENT_INVOICE", "Prepayment invoice"),
    ("EXECUTING", "In progress"), ("FINAL_INVOICE", "Final invoice"), ("WON", "Deal won"),
    ("LOSE", "Deal lost"),
)
DEAL_CATEGORIES = ((0, "General"), (1, "Wholesale"), (2, "Partners"))
LEAD_STATUSES = (("NEW", "Unassigned"), ("IN_PROCESS", "In progress"), ("PROCESSED", "Processed"),
                 ("JUNK", "Junk lead"), ("CONVERTED", "Good lead"))
SOURCES = (("CALL", "Call"), ("EMAIL", "E-mail"), ("WEB", "Website"), ("ADVERTISING", "Advertising"),
           ("PARTNER", "Existing client"), ("RECOMMENDATION", "By recommendation"), ("OTHER", "Other"))
DEAL_TYPES = (("SALE", "Sales"), ("COMPLEX", "Complex sale"), ("GOODS", "Merchandise sale"),
              ("SERVICES", "Service sale"), ("SERVICE", "After-sale service"))
CONTACT_TYPES = (("CLIENT", "Clients"), ("SUPPLIER", "Suppliers"), ("PARTNER", "Partners"),
                 ("OTHER", "Other"))
COMPANY_TYPES = (("CUSTOMER", "Client"), ("SUPPLIER", "Supplier"), ("COMPETITOR", "Competitor"),
                 ("PARTNER", "Partner"), ("OTHER", "Other"))
INDUSTRIES = (("IT", "Information Technology"), ("TELECOM", "Telecommunication"),
              ("MANUFACTURING", "Manufacturing"), ("BANKING", "Banking Services"),
              ("CONSULTING", "Consulting"), ("FINANCE", "Finance"), ("OTHER", "Other"))
CURRENCIES = ("RUB", "USD", "EUR")
