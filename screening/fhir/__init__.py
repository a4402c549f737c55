"""FHIR R4 forms of the service's data: the Questionnaire and QuestionnaireResponses.

Pure translations driven by the questionnaire data, used by the services (reading
a submitted QuestionnaireResponse) and by the web layer (serving the Questionnaire).
It builds on the rules core only: no Flask, no database.
"""
